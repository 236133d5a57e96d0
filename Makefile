# Crypto Stats Platform: `make run` starts everything, `make test` runs the suite. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean fake-coingecko

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed, found " + sys.version.split()[0] + "; run make PYTHON=python3.11 ...")'
	@# A venv without pip (python3-venv missing when it was made) is rebuilt rather than reused.
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } || \
		{ echo "cannot create a virtualenv: on Debian/Ubuntu, apt-get install python3-venv"; rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -r requirements-dev.txt -c constraints.txt
	@# The project itself, editable, for its console script `cryptostats` (pyproject.toml); no dependency is added.
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps --quiet -e .
	touch $(STAMP)

run: install
	$(BIN)/python -m app.cli run

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Store benchmark: 100,000 records per backend (SQLite, memory; MongoDB too when MONGODB_TEST_URI is set); then the
# Data API's history and stats reads over a year of 15-minute records; then 1,000 coins x 3 currencies (update,
# web start, applied update; a year of daily history, 30 days on a MongoDB-wire server); then the web over HTTP
# (needs wrk; figures and how to read them in docs/benchmarks.md); then how fast a stored update reaches 1,000 SSE
# streams.
bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "make bench needs wrk, the HTTP load generator: on Debian/Ubuntu, apt-get install wrk"; exit 1; }
	$(BIN)/python -m tests.contract.bench_store
	$(BIN)/python -m tests.contract.bench_history
	$(BIN)/python -m tests.contract.bench_scale --mongo-history-days 30
	$(BIN)/python -m tests.bench_http
	$(BIN)/python -m tests.bench_stream

# An offline CoinGecko for demos: run it, then `COINGECKO_BASE_URL=http://127.0.0.1:8900/api/v3 make run`.
fake-coingecko: install
	$(BIN)/python -m tests.fake_coingecko --port 8900

# Removes the virtualenv and caches; DATA_DIR (your price history) is left alone.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache *.egg-info
