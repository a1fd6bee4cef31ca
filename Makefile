# The two commands of the README. Both start from a bare Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-kernels demo install lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned: a bare `torch` can pull a CUDA build of several GB.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,demo]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The tests marked `kernels` again, under another CPU's kernels (tests/kernels.py):
# what holds only on the CPU that recorded it fails here, not on a user's machine.
test-kernels: $(STAMP)
	$(BIN)/python tests/kernels.py sse -m kernels

# The quick sweep (every method and scenario on real solar-cell images, ELPV, shipped by
# a package: offline), then the report; prints the path of its index.html. 3.5 min on
# a 2-core AVX2 machine (README, "The demo").
demo: $(STAMP)
	$(BIN)/sparsebench demo --config configs/quick.yaml --out report

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
