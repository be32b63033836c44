# dinomap: two commands on a fresh machine.
#   make demo   set up, then run the whole pipeline on the built-in demo data
#   make test   set up, then run lint, type checks, the docs build and the fast test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dinomap-installed
EXTRAS := dev,docs,export,search,report,openvino,ray,s3,torchdr
OUT    ?= runs/demo

.PHONY: setup system-packages demo test test-slow lint docs bench clean

setup: $(STAMP)

# Pinned, reproducible environment: constraints.txt pins every package (torch and torchvision
# as a matching pair); the package itself is installed editable.
$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	bash tests/export/get_tritonserver.sh $(VENV)
	touch $(STAMP)

# Debian packages: the Fashion-MNIST data set and Chromium for the report's browser tests.
# Installed when running as root; otherwise a note says what is missing (tests that need them skip).
SYSTEM_PKGS := dataset-fashion-mnist chromium
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages ($(SYSTEM_PKGS)); install them by hand for the full data set and browser tests"; fi

demo: setup
	$(BIN)/dinomap demo --out $(OUT)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# The documentation site: a broken link, anchor or API reference fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs
	$(BIN)/python -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

bench: setup
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/bench_embed.py --out benchmarks/results/bench_embed.json
	$(BIN)/python benchmarks/bench_report.py --out benchmarks/results/bench_report.json

clean:
	rm -rf $(VENV) runs site .pytest_cache .mypy_cache .ruff_cache test-artifacts
