# The front door: `make run` starts the product with a demo, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_AGENT ?= agent_demo
DEMO_SUPERVISOR ?= supervisor_demo

.PHONY: install run test test-deps lint bench clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

install: $(BIN)/activate

# `make run` is a development server: DEBUG on (the published dev key, local host names) unless
# the environment says otherwise. mypy imports the settings too.
run lint: export DJANGO_DEBUG ?= true

run: install
	$(BIN)/python manage.py migrate --noinput
	@$(BIN)/python manage.py demo_accounts --agent $(DEMO_AGENT) --supervisor $(DEMO_SUPERVISOR)
	@echo "Open http://$(HOST):$(PORT)/ and sign in with an account above."
	@# Without Redis the simulated chatbot runs inside the server (the in-memory layer is per
	@# process); with Redis it is a process of its own, as the real ai_chatbot would be.
	@if [ -n "$$REDIS_URL" ] && [ "$${SIMULATE_CHATBOT:-true}" = "true" ]; then \
		$(BIN)/python manage.py simulate_chatbot & sim=$$!; \
		trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
		SIMULATE_CHATBOT=false \
			$(BIN)/daphne -b $(HOST) -p $(PORT) sse_project.asgi:application; \
	else \
		SIMULATE_CHATBOT=$${SIMULATE_CHATBOT:-true} \
			$(BIN)/daphne -b $(HOST) -p $(PORT) sse_project.asgi:application; \
	fi

# The tests start their own redis-server, drive Debian's chromium, run Debian's nginx in front
# of daphne (docs/deploy/nginx) and check the systemd units with systemd-analyze. Where this
# machine can install them (root with apt-get), `make test` does; elsewhere it stops at once
# and says how. (apt-get installs no running nginx in a container whose policy-rc.d forbids it;
# elsewhere Debian starts one on port 80: `systemctl disable --now nginx` if it is not wanted.)
TEST_PACKAGES := redis-server chromium nginx systemd
test-deps:
	@command -v redis-server >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } \
		&& { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } && command -v systemd-analyze >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing $(TEST_PACKAGES) for the tests (apt-get)..."; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; \
		else \
			echo "The tests need $(TEST_PACKAGES) (Debian's): sudo apt-get install -y $(TEST_PACKAGES)" >&2; \
			exit 1; \
		fi; }

# The session, handoff and race tests run a second time on PostgreSQL when TEST_POSTGRES_URL
# names a server (an admin URL: .ci/run gives postgres://postgres@127.0.0.1:5432/postgres);
# tests/support/databases.py says how, and fails at once, saying how to fix it, without one.
POSTGRES_TESTS := tests/test_sessions_*.py tests/test_handoff_processes.py tests/test_accept_race.py \
	tests/test_supervision.py tests/test_supervision_processes.py tests/test_workbench_context.py \
	tests/test_record.py tests/test_outbox.py tests/test_history_search.py

test: install test-deps node_modules/.package-lock.json
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if [ -n "$$TEST_POSTGRES_URL" ]; then \
		echo "The session, handoff and race tests again, on PostgreSQL ($$TEST_POSTGRES_URL)"; \
		TEST_DB=postgres $(BIN)/python -m pytest $(POSTGRES_TESTS); \
	fi

# From npm (package-lock.json): eslint for the pages' JavaScript, and axe-core, which the browser
# tests inject to check accessibility. The pages themselves need no build step.
node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make lint and make test need Node.js and npm: sudo apt-get install -y nodejs npm" >&2; exit 1; }
	npm ci --no-audit --no-fund --silent

lint: install node_modules/.package-lock.json
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	npx --no-install eslint static/js

bench: install
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules staticfiles .mypy_cache .ruff_cache
