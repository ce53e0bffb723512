# The two commands of the README: `make demo` and `make test` (root, Debian/Ubuntu).
.PHONY: demo test lint setup clean-lab

setup:
	bash scripts/bootstrap.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/pytest -ra

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports

clean-lab:
	.venv/bin/wgmesh lab down --dir lab
