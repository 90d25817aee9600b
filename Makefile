# `make check` is the whole suite: lint, types, then tests (the README's test command runs it).
.PHONY: check lint test test-fast js

check: lint test

lint:
	ruff check proxy storage tests bench
	ruff format --check proxy storage tests bench
	mypy --strict proxy storage tests

js:
	npm ci --prefix tests/js --no-audit --no-fund

test: js
	pytest

# Everything but the tests that spawn subprocesses (marked slow): the quick loop while editing.
test-fast:
	pytest -m "not slow"
