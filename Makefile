# `make demo` and `make test` work on a fresh clone: both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every other Python that pyproject.toml claims: `make test` runs the suite on each too,
# in a venv of its own (.venv-3.12, ...), with the interpreter pyenv keeps on this
# machine (or pythonX.Y on the PATH). A claimed Python that is missing fails the run.
OTHER_PYTHONS := 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
EXTRAS := test,cli,server,responses,postgres,otel,webhooks,bench

.PHONY: demo test lint postgres versions bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

$(VENV)-%/.installed: pyproject.toml
	@py=$$(ls -d $(PYENV_ROOT)/versions/$*.*/bin/python$* 2>/dev/null | tail -n 1); \
	py=$${py:-$$(command -v python$* || true)}; \
	if [ -z "$$py" ]; then echo "Python $* is claimed but not installed here" >&2; exit 1; fi; \
	echo "$$py -m venv $(VENV)-$*"; \
	$$py -m venv $(VENV)-$* && \
	$(VENV)-$*/bin/pip install -q --upgrade pip && \
	$(VENV)-$*/bin/pip install -q -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy runstate

# The PostgreSQL tests use the machine's server on 127.0.0.1:5432; start it if it is down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432

# Branch coverage of runstate/, subprocesses included, on the main Python; the floor is
# fail_under in pyproject.toml. Then the whole suite on every other claimed Python.
test: lint postgres
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered
	$(MAKE) versions

versions: postgres $(foreach v,$(OTHER_PYTHONS),$(VENV)-$(v)/.installed)
	@for v in $(OTHER_PYTHONS); do \
		echo "== the suite on Python $$v"; \
		$(VENV)-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) $(VENV)-* build *.egg-info .pytest_cache .mypy_cache .ruff_cache
