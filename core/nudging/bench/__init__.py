"""Speed and batch-throughput benchmarks (`nudging bench`)."""
