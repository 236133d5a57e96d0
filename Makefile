# Crypto Stats Platform: `make run` starts everything, `make test` runs the suite. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean fake-coingecko

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(BIN)/python -m app.cli run

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Store benchmark: 100,000 records per backend (SQLite, memory; MongoDB too when MONGODB_TEST_URI is set).
bench: install
	$(BIN)/python -m tests.contract.bench_store

# An offline CoinGecko for demos: run it, then `COINGECKO_BASE_URL=http://127.0.0.1:8900/api/v3 make run`.
fake-coingecko: install
	$(BIN)/python -m tests.fake_coingecko --port 8900

clean:
	rm -rf $(VENV) data .pytest_cache
