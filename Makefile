# One entry point for people and CI. Every pip call uses constraints.txt (torch pinned to the CPU
# build's version, so pip never pulls a multi-GB CUDA wheel).
VENV    ?= .venv
PY      := $(VENV)/bin/python
INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
PROMPT  ?= a red circle on a blue background --seed 7

.PHONY: install demo test lint typecheck tools clean

$(PY):
	python3 -m venv $(VENV)

install: $(PY)
	$(INSTALL) -e '.[all,dev]'

# The main job on embedded defaults: nothing else needs to be configured. Starts the embedded
# PostgreSQL, queues a job, runs a worker in-process and writes a 2×2 grid to onbrand-out/.
demo: install
	$(VENV)/bin/onbrand imagine "$(PROMPT)"

# System tools some tests drive (exiftool reads our AI disclosure back).
tools:
	@command -v exiftool >/dev/null || { \
	  echo "installing exiftool (Debian package libimage-exiftool-perl)"; \
	  (apt-get install -y -qq libimage-exiftool-perl >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq libimage-exiftool-perl >/dev/null)) || \
	  echo "could not install exiftool: the metadata test will say how"; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

test: install tools lint typecheck
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) .onbrand .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
