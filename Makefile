# Hailuo Studio: the two commands of the quick start, and a few helpers.
.PHONY: run test bench lint clean

run:  ## set up and run the demo (SQLite, sandboxes, demo logins); Ctrl-C stops all
	scripts/run.sh

test:  ## set up and run the whole test suite against a throwaway PostgreSQL
	scripts/test.sh

lint:
	scripts/bootstrap.sh --test && .venv/bin/ruff check .

clean:
	rm -rf .venv var
