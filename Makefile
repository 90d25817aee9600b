# `make check` is the whole suite: lint, types, then tests (the README's test command runs it).
.PHONY: check lint test test-fast js

# npm ci only when tests/js/package-lock.json is newer than the last install; the stamp lives in
# node_modules, so deleting node_modules reinstalls too.
JS_STAMP := tests/js/node_modules/.package-lock.stamp

check: lint test

lint:
	ruff check proxy storage tests bench
	ruff format --check proxy storage tests bench
	mypy --strict proxy storage tests

js: $(JS_STAMP)

$(JS_STAMP): tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
	touch $@

test: js
	pytest

# Everything but the tests that spawn subprocesses (marked slow): the quick loop while editing.
test-fast:
	pytest -m "not slow"
