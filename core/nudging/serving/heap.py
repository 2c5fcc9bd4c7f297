"""Heap settings for a long-running server process (glibc only; elsewhere nothing changes).

A decode step allocates logits of [rows × vocabulary] floats (1 MiB per row for a 262k vocabulary)
whose size changes with every draft, verification and batch. glibc raises its mmap threshold to the
largest block freed so far, after which such buffers come from per-thread arenas and are kept
there, fragmented: a server's RSS then grows by ~145 MiB over 400 requests that leak nothing
(tests/test_server.py). A fixed 1 MiB threshold hands every large buffer back to the kernel on free,
at the cost of a page-fault pass per buffer, small against a forward.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("nudging.server")

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
LARGE = 1 << 20


def release_large_buffers() -> bool:
    """Fix glibc's mmap and trim thresholds at 1 MiB; True when applied. NUDGING_MALLOC_TUNE=0 opts out."""
    if os.environ.get("NUDGING_MALLOC_TUNE") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        ok = libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, LARGE)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, LARGE))
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        ok = False
    if not ok:
        log.debug("heap thresholds unchanged (no glibc mallopt)")
    return ok
