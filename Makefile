# The two commands of the README: `make demo` and `make test` (root, Debian/Ubuntu).
.PHONY: demo test lint setup clean-lab

setup:
	bash scripts/bootstrap.sh

demo: setup
	bash scripts/demo.sh

# The unit suite waits more than it computes (in-process SSH servers, node scripts under two shells): 4 workers.
# The end-to-end suite builds lab hosts as root and runs alone.
test: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/pytest -ra -n 4 --ignore=tests/e2e
	.venv/bin/pytest -ra tests/e2e

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports

clean-lab:
	.venv/bin/wgmesh lab down --dir lab
