# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make app    set up, then serve the web app on the bundled model (http://127.0.0.1:7860)
#   make test   set up (including headless Chromium for the browser test), then run every test
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup setup-test app test test-fast test-no-browser bench browser notebook
# The web app's install stays light (no Ray, no Jupyter); the tests add the test extra, which
# includes the scale extra (Ray Data) and what the notebooks need.
setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	touch $@

app: setup
	$(BIN)/pneumoscope serve

browser:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: setup-test browser
	$(BIN)/python -m pytest -q

# The quick local loop: everything but the tests that train, serve or drive a browser (CI runs all).
test-fast: setup-test
	$(BIN)/python -m pytest -q -m "not slow and not browser"

# For a machine without apt or root: every test but the browser one, which is skipped with a message.
test-no-browser: setup-test
	PNEUMOSCOPE_SKIP_BROWSER=1 $(BIN)/python -m pytest -q -rs

# JupyterLab in the venv, on the walkthrough notebooks (notebooks/walkthrough.ipynb, notebooks/recorrido.ipynb).
notebook: $(VENV)/.notebook
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

$(VENV)/.notebook: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[notebook]"
	touch $@

bench: setup-test
	for script in bench/*.py; do $(BIN)/python $$script; done
