# Two commands on a fresh machine: `make run` (server on SQLite with demo data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve migrate seed schema test lint bench bench-writes bench-search bench-aggregates bench-scale-out bench-subscriptions breakdown clean

GRAPHIQL := web/graphiql/node_modules/.package-lock.json

$(INSTALLED): pyproject.toml db/sqlite_functions.c
	scripts/install-build-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# GraphiQL's files, so the playground works offline (web/graphiql.py); without npm it uses the CDN.
$(GRAPHIQL): web/graphiql/package-lock.json
	@if command -v npm >/dev/null; then \
		cd web/graphiql && npm ci --no-audit --no-fund --silent; \
	else \
		echo "npm not found: GraphiQL will load from the unpkg CDN"; \
	fi

install: $(INSTALLED) $(GRAPHIQL)

# Migrate, seed demo data if the database is empty, and serve http://127.0.0.1:8000/graphql.
run: install migrate seed serve

serve: install
	$(BIN)/quill serve --host $(HOST) --port $(PORT)

migrate: install
	$(BIN)/quill migrate

seed: install
	$(BIN)/quill seed

# Regenerate the committed SDL (tests/test_schema_contract.py fails while it is stale).
schema: install
	$(BIN)/quill export-schema -o schema.graphql

# The whole suite on SQLite, PostgreSQL and MariaDB (TEST_DATABASE_URL, TEST_MARIADB_URL; default
# the local services), then again with the compiled read path off (COMPILED_READS=0), so that
# both ways of answering stay tested: that pass skips the tests marked one_path, whose outcome
# cannot depend on the executor (pyproject.toml). Last, the PostgreSQL tests once more through a
# real PgBouncer in transaction mode (tests/pgbouncer_rig.py).
test: install
	scripts/install-test-deps
	$(BIN)/pytest --durations=25
	COMPILED_READS=0 $(BIN)/pytest -m "not one_path" --durations=10
	TEST_DATABASE_POOLER=pgbouncer $(BIN)/pytest -k postgres --durations=10

# Side by side with the peer servers of ../shared/bench (about 15 minutes; see bench/run.py).
bench: install
	$(BIN)/python bench/run.py

# Writes (M1-M3) with a new row per request, and one server process against two (after `make bench`).
bench-writes: install
	$(BIN)/python bench/writes.py

# Full-text search against a hand-written server over the same index (after `make bench`).
bench-search: install
	$(BIN)/python bench/search.py

# Aggregates (groupBy) against a hand-written server (after `make bench`).
bench-aggregates: install
	$(BIN)/python bench/aggregates.py

# Reads on a streaming replica vs the primary, PgBouncer vs direct (after `make bench`; ~6 minutes).
bench-scale-out: install
	$(BIN)/python bench/scale_out.py

# Subscribers one process holds and how fast an event reaches the last (PostgreSQL + Redis; ~10 minutes).
bench-subscriptions: install
	$(BIN)/python bench/subscriptions.py

# Where a compiled query's time goes inside the server (after `make bench` loaded its database).
breakdown: install
	$(BIN)/python bench/breakdown.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
