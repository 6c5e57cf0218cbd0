# The two commands a new user needs: `make run` and `make test`.
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install setup run dev demo test lint format lock clean

install:  ## create .venv and install the locked dependencies
	@scripts/bootstrap requirements-dev.txt

setup: install
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py ensure_admin
	@$(PY) manage.py collectstatic --noinput --verbosity 0

run: setup  ## web server + worker on http://$(HOST):$(PORT)/admin/
	@$(PY) manage.py serve --host $(HOST) --port $(PORT)

dev: setup  ## the same with Django's dev server and readable logs
	@$(PY) manage.py serve --dev --host $(HOST) --port $(PORT)

# Links in the demo's notifications point at the address it is served on.
demo: export OPSCONSOLE_BASE_URL ?= http://$(HOST):$(PORT)
# The demo's sample services and checks live on loopback: let the console reach them.
demo: export OPSCONSOLE_OUTBOUND_ALLOW ?= 127.0.0.0/8,::1/128
demo: setup  ## the demo (sample services, people, inbox), then serve it as `make run` does
	@$(PY) manage.py demo
	@$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: install  ## the whole suite on SQLite, then again on PostgreSQL (started by the tests)
	@$(PY) -m pytest $(PYTEST_ARGS)
	@$(PY) -m pytest --postgres $(PYTEST_ARGS)

lint: install
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) manage.py makemigrations --check --dry-run

format: install
	@$(PY) -m ruff format .
	@$(PY) -m ruff check --fix .

lock: install  ## re-resolve requirements*.txt from pyproject.toml
	@$(PY) -m piptools compile -q --generate-hashes --allow-unsafe --strip-extras -o requirements.txt pyproject.toml
	@$(PY) -m piptools compile -q --generate-hashes --allow-unsafe --strip-extras --extra test --extra dev -c requirements.txt -o requirements-dev.txt pyproject.toml

clean:
	rm -rf .venv var/static
