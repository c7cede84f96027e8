# genq: one command vocabulary for people and CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODELS_STAMP := $(VENV)/.models-stamp
DATA   ?= .genq
HOST   ?= 127.0.0.1
PORT   ?= 8000
# TLS=1: `make run` serves HTTPS with a local CA made once under $(DATA)/tls (trustme);
# clients trust $(DATA)/tls/client.pem (e.g. SSL_CERT_FILE=...). The fal SDK needs it.
TLS    ?=
SCHEME := $(if $(TLS),https,http)
SERVE_TLS := $(if $(TLS),--ssl-certfile $(DATA)/tls/server.pem --ssl-keyfile $(DATA)/tls/server.key)
# the torch `make test` installs for the model tests (tests/models): this pin takes the
# CPU wheel here. `make run` installs no torch: a GPU host brings its CUDA build (README)
TORCH  ?= 2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install models-deps system-deps test-deps run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# models-deps: torch (pinned first: a bare `torch` pulls a CUDA build of several GB) and
# the diffusers extra, for tests/models; `pip install -e '.[diffusers]'` on a GPU host
$(MODELS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q torch==$(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,diffusers]'
	touch $(MODELS_STAMP)

models-deps: $(MODELS_STAMP)

# Debian packages, installed when missing (as root with apt-get; else a note).
# system-deps: what serving uses. assimp writes FBX files for the demo engines.
system-deps:
	@command -v assimp >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq assimp-utils >/dev/null) \
	      || echo "warning: could not install assimp-utils; FBX uses genq's own writer"; \
	  else echo "note: assimp not found; FBX uses genq's own writer"; fi; }

# test-deps: what only the tests use. chromium runs the dashboard's browser tests
# (tests/e2e); curl runs the README's tour (tests/acceptance/test_readme.py).
test-deps:
	@missing=""; test -x /usr/bin/chromium || missing=" chromium"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the tests need it"; \
	  else echo "note: install$$missing: the tests need it"; fi; fi

run: install system-deps
	@mkdir -p $(DATA)
	$(BIN)/genq db upgrade --data-dir $(DATA)
	@test -s $(DATA)/demo.key || $(BIN)/genq keys create --data-dir $(DATA) --account demo --plan pro > $(DATA)/demo.key
	@if [ -n "$(TLS)" ] && [ ! -s $(DATA)/tls/server.key ]; then \
	  mkdir -p $(DATA)/tls && $(BIN)/python -m trustme -q -d $(DATA)/tls -i $(HOST) localhost 127.0.0.1 ::1; fi
	@echo ""
	@echo "  genq is starting on $(SCHEME)://$(HOST):$(PORT)"
	@if [ -n "$(TLS)" ]; then echo "  its CA (trust it in clients): export SSL_CERT_FILE=$$(cd $(DATA)/tls && pwd)/client.pem"; fi
	@echo "  API key (account demo): $$(cat $(DATA)/demo.key)"
	@echo ""
	@echo "  try:"
	@echo "    export GENQ_API_KEY=$$(cat $(DATA)/demo.key) GENQ_BASE_URL=$(SCHEME)://$(HOST):$(PORT)"
	@echo "    curl -s $(SCHEME)://$(HOST):$(PORT)/v1/jobs -H \"Authorization: Bearer \$$GENQ_API_KEY\" -H 'content-type: application/json' -d '{\"engine\": \"demo/text2image\", \"input\": {\"prompt\": \"a red fox\"}}'"
	@echo "    $(BIN)/genq run demo/text2image -i prompt='a red fox' --out ./out/fox"
	@echo ""
	$(BIN)/genq serve --data-dir $(DATA) --host $(HOST) --port $(PORT) $(SERVE_TLS)

# the whole suite on SQLite, then everything that touches a database again on
# PostgreSQL (127.0.0.1:5432; GENQ_TEST_PG to change); tests/unit needs none,
# tests/contract (the OpenAPI document against the server: the API's, not the
# database's) and tests/models (diffusers and Cog engines: model runtimes, on the
# same job path as every other engine) run once
test: install models-deps system-deps test-deps
	$(BIN)/python -m pytest
	GENQ_TEST_DB=postgres $(BIN)/python -m pytest --ignore=tests/unit --ignore=tests/contract --ignore=tests/models

lint: install models-deps
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

bench: install
	$(MAKE) -C bench all

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
