# Heron: `make run` serves the API with its bundled models; `make test` runs every test.
# Both create the virtualenv and install everything on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install system-deps run test lint bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev,onnx]'
	# heron-client (httpx only): the tests drive heron serve through it. Synapse gets its own
	# virtualenv under .cache/synapse/, made by tests/integration/synapse_harness.py.
	$(BIN)/pip install --quiet -e ./clients/python
	touch $(STAMP)

# A headless Chromium for the review UI's Playwright tests (tests/browser): Playwright's own build
# when its CDN answers, else the distribution's `chromium` package (the tests use either).
BROWSER_STAMP := $(VENV)/.browser-stamp
$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m playwright install --with-deps chromium \
	  || command -v chromium >/dev/null \
	  || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || { echo "install: no Chromium for the browser tests; apt-get install chromium"; exit 1; }
	touch $(BROWSER_STAMP)

install: $(STAMP) system-deps

# System packages the image scorers need on a fresh machine (as root, Debian/Ubuntu):
# tesseract-ocr for the OCR scorer (pipeline/scorers/image_scam.py), node + npm for the nsfwjs
# parity test (tests/unit/test_images_nsfw_parity.py installs nsfwjs into ~/.cache/heron).
system-deps:
	@command -v tesseract >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr tesseract-ocr-eng; } \
	  || { echo "install tesseract-ocr (apt-get install tesseract-ocr tesseract-ocr-eng)"; exit 1; }
	@# Only when npm is missing: a nodesource nodejs ships its own npm, and Debian's npm conflicts with it.
	@command -v npm >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } \
	  || { echo "install nodejs and npm (apt-get install nodejs npm)"; exit 1; }

run: install
	@$(BIN)/heron migrate
	@echo "----------------------------------------------------------------------------------"
	@echo " Heron on http://$(HOST):$(PORT)   docs: http://$(HOST):$(PORT)/docs"
	@echo " First time? Create an API key in another terminal:"
	@echo "     $(BIN)/heron keys create --tenant my-chat"
	@echo " then:  curl -s -H \"Authorization: Bearer <key>\" -H 'Content-Type: application/json' \\"
	@echo "          -d '{\"text\": \"you are an idiot\"}' http://$(HOST):$(PORT)/v1/moderate"
	@echo "----------------------------------------------------------------------------------"
	$(BIN)/heron serve --host $(HOST) --port $(PORT) --no-migrate

test: install $(BROWSER_STAMP)
	$(BIN)/python -m pytest -ra -q

lint: install
	$(BIN)/ruff check pipeline api models training tests bench notebooks clients integrations

bench: install
	@command -v wrk >/dev/null || apt-get install -y -qq wrk || { echo "bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python bench/bench_text.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_images.py

clean:
	rm -rf $(VENV) var .pytest_cache
