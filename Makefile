# The two commands a fresh machine needs: `make up` (the local dev stack) and
# `make test` (lint, types, and every test). See README.md.

# bash with pipefail: a recipe like `pulumi stack output | python3 -m ...` stops
# when either side fails, instead of running the next command half-configured.
SHELL       := bash
.SHELLFLAGS := -eu -o pipefail -c
.NOTPARALLEL:

VENV      ?= venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip install --quiet --disable-pip-version-check
STATE_DIR := $(CURDIR)/.pulumi-state
# A file backend inside the checkout: no cloud account, no global `pulumi login`.
PULUMI_ENV := PULUMI_BACKEND_URL=file://$(STATE_DIR) PULUMI_CONFIG_PASSPHRASE_FILE=$(STATE_DIR)/passphrase
PULUMI    := $(PULUMI_ENV) pulumi
STACK     ?= dev
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)
# $(call need,command,message): stop with `error: message` unless the command is on PATH.
need = command -v $(1) >/dev/null || { echo "error: $(2)" >&2; exit 1; }

.PHONY: help preflight check-config venv tools servers e2e-servers lint typecheck test pytest test-fast bench bench-backup bench-login bench-program bench-stack \
        e2e mutation mutation-sample local-check local-ready state-check up preview destroy destroy-all outputs render psql redis-cli app-env status stats logs restart backup restore verify reset-db import-dump \
        aws-check aws-ready aws-bootstrap aws-preview aws-up aws-backup aws-restore aws-logs tunnel

help:
	@echo "make up                 the local dev stack (pulumi up on $(STACK), state in .pulumi-state/)"
	@echo "make test               ruff, mypy and every test (installs what it needs; servers: make servers)"
	@echo "make test-fast          the tests that start no server, in about 4 minutes"
	@echo "make e2e                the dev stack applied on a Docker engine of its own (root; README, \"On a real engine\")"
	@echo "make mutation [ARGS=policies]   mutation testing of the security and data-safety code (docs/testing.md)"
	@echo "make mutation-sample    one mutant per function of each area, as CI runs it"
	@echo "make pytest ARGS=...    pytest alone, e.g. ARGS='tests/test_config.py -k port'"
	@echo "make check-config STACK=prod   validate Pulumi.<stack>.yaml without the Pulumi CLI"
	@echo "make verify [ARGS=--auth]  check every service of the running stack (README, \"Verifying it\")"
	@echo "make reset-db [FORCE=1]    the database emptied and rebuilt through the stack, after a verified backup"
	@echo "make backup | restore TARGET=<db> [ID=...] [FORCE=1] | restart SERVICE=..."
	@echo "make import-dump FILE=x.dump   a pg_dump made elsewhere, into the stack's schemas as the platform's own"
	@echo "make render [STACK=prod]   every file the stack renders, into rendered/<stack>/, to diff"
	@echo "make preview | outputs | psql ROLE=... | redis-cli | status | stats | logs [SERVICE=...] [FOLLOW=1] | destroy | destroy-all"
	@echo "make aws-bootstrap BUCKET=... REGION=...   the state bucket and secrets key, once"
	@echo "make aws-preview | aws-up | aws-backup | aws-restore | aws-logs [SERVICE=...] | tunnel   (STACK=prod|staging; docs/aws.md)"
	@echo "make bench | bench-login | bench-backup | bench-program | bench-stack   the benchmarks the README quotes"

# --- Python environments -------------------------------------------------------
# One venv (Pulumi.yaml names it), filled in stages so each command installs only
# what it runs: the config parser (seconds), the program (`make up`), the tests.
$(VENV)/bin/python:
	python3 -m components.commands.preflight python
	python3 -m venv $(VENV)

# The config parser's own dependencies, at the versions requirements.txt pins.
$(VENV)/.config: requirements.txt | $(VENV)/bin/python
	$(PIP) $$(grep -iE '^(pydantic|PyYAML|APScheduler)==' requirements.txt)
	touch $@

$(VENV)/.program: requirements.txt $(VENV)/.config
	$(PIP) -r requirements.txt
	touch $@

# The tests' dependencies, and the API and backup tool as commands
# (wondernest-api, wondernest-backup) importable from anywhere.
# What `make verify` adds to the program's.
$(VENV)/.verify: requirements-verify.txt $(VENV)/.program
	$(PIP) -r requirements-verify.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements-verify.txt app/requirements.txt app/requirements-backup.txt app/requirements-dev-s3.txt \
              policies/requirements.txt app/pyproject.toml $(VENV)/.program
	$(PIP) -r requirements-dev.txt
	$(PIP) --no-deps -e ./app
	touch $@

venv: $(VENV)/.dev

# checkov pins its own dependency tree, so it lives in a venv of its own.
TOOLS := $(CURDIR)/.tools
tools: $(TOOLS)/checkov/bin/checkov

$(TOOLS)/checkov/bin/checkov:
	python3 -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30

# The real servers the tests start (Debian 12 packages; root, or sudo).
SERVER_PACKAGES := postgresql-15 redis-server prometheus prometheus-alertmanager \
                   prometheus-postgres-exporter prometheus-redis-exporter prometheus-node-exporter
servers:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SERVER_PACKAGES) >/dev/null

# make e2e's: debootstrap, and Debian's docker.io unless a dockerd is already
# installed (Docker's own docker-ce packages conflict with it).
e2e-servers:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    debootstrap wrk $$(command -v dockerd >/dev/null || echo docker.io) >/dev/null

# --- Tests ------------------------------------------------------------------------
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --no-cache --check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy .
	$(VENV)/bin/mypy policies/__main__.py

test: $(VENV)/.dev tools lint typecheck
	python3 -m components.commands.preflight servers
	$(PY) -m pytest $(ARGS)

pytest: $(VENV)/.dev tools
	$(PY) -m pytest $(ARGS)

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not servers" $(ARGS)

# Its own dockerd (data under .e2e/, removed afterwards), stand-in upstream
# images, the project's images, the program's graph applied and verified.
e2e: $(VENV)/.dev
	$(PY) -m pytest -m e2e tests/e2e $(ARGS)

# mutmut over the code that decides security and data safety (tests/mutation/run.py):
# every mutant of every area, or one per function (what CI runs).
mutation: $(VENV)/.dev
	$(PY) -m tests.mutation.run $(ARGS)

mutation-sample: $(VENV)/.dev
	$(PY) -m tests.mutation.run --sample 1 --require 1.0 $(ARGS)

bench: $(VENV)/.dev
	$(PY) app/bench/benchmark.py $(ARGS)

bench-backup: $(VENV)/.dev
	$(PY) app/bench/backup_benchmark.py $(ARGS)

bench-login: $(VENV)/.dev
	$(PY) app/bench/login_benchmark.py $(ARGS)

bench-program: $(VENV)/.dev
	$(PY) tests/bench_program.py $(ARGS)

# What the dev stack costs on the engine make e2e starts (root; make e2e-servers installs wrk too).
bench-stack: $(VENV)/.dev
	$(PY) -m tests.e2e.bench_stack $(ARGS)

# --- The local stack -------------------------------------------------------------
preflight:
	python3 -m components.commands.preflight tools

check-config: $(VENV)/.config
	$(PY) -m components.commands.check_config $(STACK)

$(STATE_DIR)/passphrase:
	mkdir -p $(STATE_DIR)
	umask 077 && head -c 32 /dev/urandom | base64 > $@

# The passphrase guards only this machine's local state; prod uses a KMS key.
POLICIES := --policy-pack policies --policy-pack-config policies/config/$(STACK).json

# The policy pack runs in a venv of its own (PulumiPolicy.yaml).
policies/venv/.installed: policies/requirements.txt
	python3 -m venv policies/venv
	policies/venv/bin/pip install --quiet --disable-pip-version-check -r policies/requirements.txt
	touch $@

# The file backend and passphrase are for the local stack only.
local-check:
	@test "$(STACK)" = dev || { echo "error: $(STACK) is an AWS stack: use make aws-preview / make aws-up" >&2; exit 2; }

# Everything a local `up` needs is checked before the program's dependencies are installed.
local-ready: local-check preflight $(VENV)/.config
	$(PY) -m components.commands.check_config $(STACK) --ports

up: local-ready $(VENV)/.program policies/venv/.installed $(STATE_DIR)/passphrase
	$(PULUMI) stack select --create --secrets-provider passphrase $(STACK)
	$(PULUMI) up --stack $(STACK) --yes --refresh $(POLICIES)

# Refreshed first, as `up` is: a change made by hand (drift) shows as the
# update that puts it back, not as nothing.
preview: local-ready $(VENV)/.program policies/venv/.installed $(STATE_DIR)/passphrase
	$(PULUMI) stack select --create --secrets-provider passphrase $(STACK)
	@echo "preview of $(STACK), refreshed from what is running first: drift shows as changes"
	$(PULUMI) preview --stack $(STACK) --diff --refresh $(POLICIES)

# Recipes that read the local stack's state: without it they stop, and create nothing.
state-check: local-check
	@test -f $(STATE_DIR)/passphrase || { echo "error: no local stack state in .pulumi-state/: run make up first" >&2; exit 1; }
	@$(call need,pulumi,the Pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/))

outputs: state-check
	$(PULUMI) stack output --stack $(STACK) --show-secrets

# psql as one of the platform's roles: make psql ROLE=app|migrator|analytics|monitoring|backup|superuser
# The password goes from the state to psql's environment, never onto a command line.
ROLE ?= app
psql: state-check
	@$(call need,psql,psql not found: install the PostgreSQL client (Debian: apt-get install postgresql-client))
	@lines=$$($(PULUMI) stack output --stack $(STACK) --show-secrets --json \
	  | python3 -m components.commands.connect $(ROLE) $(STACK) $(STATE_DIR)); eval "$$lines"; exec psql

# redis-cli as the app's ACL user, over TLS to the stack's CA; the password goes
# through REDISCLI_AUTH, never a command line.
redis-cli: state-check
	@$(call need,redis-cli,redis-cli not found: install it (Debian: apt-get install redis-tools))
	@lines=$$($(PULUMI) stack output --stack $(STACK) --show-secrets --json \
	  | python3 -m components.commands.connect redis $(STACK) $(STATE_DIR)); eval "$$lines"; \
	  exec redis-cli --tls --cacert "$$REDIS_CACERT" -h "$$REDIS_HOST" -p "$$REDIS_PORT" --user "$$REDIS_USER" $(ARGS)

# The bundled API run from the checkout against the local stack's Postgres and
# Redis (as the app role, TLS verified, secrets as files only you can read):
#   eval "$(make -s app-env)" && venv/bin/wondernest-api serve   # on 127.0.0.1:8081
app-env: state-check
	@$(PULUMI) stack output --stack $(STACK) --show-secrets --json \
	  | python3 -m components.commands.connect app-env $(STACK) $(STATE_DIR)

# The stack's container names begin with this (<app>-<stack>-), from its config.
CONTAINER_PREFIX = $(PY) -m components.commands.check_config $(STACK) --container-prefix

# The local stack's containers and their health; one service's log.
# Every container the state declares, judged against Docker: one stopped by
# hand, gone or unhealthy is named, and the recipe fails (components/commands/status.py).
status: state-check $(VENV)/.config
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)); \
	  docker ps --all --filter "name=^$$prefix" --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
	@echo
	@$(PULUMI) stack export --stack $(STACK) | $(PY) -m components.commands.status

# Each running container's CPU and memory against its limit, once.
stats: local-check $(VENV)/.config
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)); \
	  names=$$(docker ps --filter "name=^$$prefix" --format '{{.Names}}'); \
	  test -n "$$names" || { echo "error: no running container of $(STACK): make up first" >&2; exit 1; }; \
	  exec docker stats --no-stream --format 'table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.PIDs}}' $$names

# Every service's last lines interleaved by time, each prefixed with its name;
# one with SERVICE=api|postgres|backups|...; FOLLOW=1 keeps printing. [LINES=200]
LINES ?= 200
logs: local-check $(VENV)/.config
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)); \
	  exec $(PY) -m components.commands.logs "$$prefix" --lines $(LINES) $(if $(SERVICE),--service $(SERVICE)) $(if $(filter 1,$(FOLLOW)),--follow)

# Every service of the stack checked from its outputs (python -m components.commands.verify):
# make verify [STACK=prod STATE=... ARGS='--postgres-via 127.0.0.1:15432 --ca-file rds.pem'] [ARGS=--auth]
VERIFY_PULUMI = $(if $(filter dev,$(STACK)),$(PULUMI),$(AWS_PULUMI))
verify: $(if $(filter dev,$(STACK)),state-check,aws-check) $(VENV)/.verify
	@$(call need,pulumi,the Pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/))
	$(VERIFY_PULUMI) stack output --stack $(STACK) --show-secrets --json | $(PY) -m components.commands.verify $(STACK) $(ARGS)

# One service restarted in place (its container, config and data unchanged).
restart: local-check $(VENV)/.config
	@test -n "$(SERVICE)" || { echo "error: name the service: make restart SERVICE=api (make status lists them)" >&2; exit 2; }
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)); exec docker restart "$${prefix}$(SERVICE)"

# A backup now, proven by restoring it into a throwaway server.
backup: local-check $(VENV)/.config
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)) \
	  && id=$$(docker exec "$${prefix}backups" python -m wondernest_backup run | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["backup"])') \
	  && docker exec "$${prefix}backups" python -m wondernest_backup verify "$$id"

# A backup restored into a database (docs/runbooks.md, "Restoring"): a new one
# by name, never over one that holds tables unless FORCE=1 (the old one is kept,
# renamed). make restore TARGET=wondernest_restored [ID=<backup id>]
restore: state-check $(VENV)/.config
	@test -n "$(TARGET)" || { echo "error: name the database to restore into: make restore TARGET=<database> [ID=<backup>] [FORCE=1]" >&2; exit 2; }
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)) \
	  && lines=$$($(PULUMI) stack output --stack $(STACK) --show-secrets --json \
	       | $(PY) -m components.commands.connect superuser $(STACK) $(STATE_DIR)) \
	  && eval "$$lines" && RESTORE_DB_USER="$$PGUSER" RESTORE_DB_PASSWORD="$$PGPASSWORD" \
	  docker exec -e RESTORE_DB_USER -e RESTORE_DB_PASSWORD "$${prefix}backups" \
	    python -m wondernest_backup restore $(if $(ID),$(ID),--latest) --target-db $(TARGET) $(if $(filter 1,$(FORCE)),--force)

# Every file the stack renders, into rendered/<stack>/ (OUT=... elsewhere), from
# the stack file under the tests' mock runtime: no engine, no cloud, no secrets.
render: $(VENV)/.dev
	$(PY) -m tests.render $(STACK) $(if $(OUT),--out $(OUT))

# A custom-format pg_dump made elsewhere, into the stack's schemas as the
# migrator's own, whatever its owners and grants (README, "Existing data"):
# make import-dump FILE=shop.dump. The dump goes in on stdin; the import logs in
# as the migrator (whatever code the dump carries runs with its rights, no
# more), its password through the environment of the one command that needs it.
import-dump: state-check $(VENV)/.config
	@test -f "$(FILE)" || { echo "error: name the dump: make import-dump FILE=<a pg_dump -Fc archive>" >&2; exit 2; }
	@$(call need,docker,the docker CLI is not on PATH)
	@prefix=$$($(CONTAINER_PREFIX)) && args=$$($(PY) -m components.commands.check_config $(STACK) --import-args) \
	  && lines=$$($(PULUMI) stack output --stack $(STACK) --show-secrets --json \
	       | $(PY) -m components.commands.connect migrator $(STACK) $(STATE_DIR)) \
	  && eval "$$lines" && RESTORE_DB_USER="$$PGUSER" RESTORE_DB_PASSWORD="$$PGPASSWORD" \
	  docker exec -i -e RESTORE_DB_USER -e RESTORE_DB_PASSWORD "$${prefix}backups" \
	    python -m wondernest_backup import-dump - $$args < "$(FILE)"

# The database emptied and rebuilt through the stack, after a verified backup:
# asks for its name to be typed, unless FORCE=1.
reset-db: state-check $(VENV)/.program
	@$(call need,docker,the docker CLI is not on PATH)
	$(PULUMI_ENV) $(PY) -m components.commands.reset_db $(STACK) $(if $(filter 1,$(FORCE)),--yes)

# Everything but the protected Postgres volume and the superuser password it was
# initialised with: the next `make up` finds the data again.
destroy: state-check
	$(PULUMI) destroy --stack $(STACK) --exclude-protected --yes

# Everything, data included.
destroy-all: state-check
	$(PULUMI) state unprotect --stack $(STACK) --all --yes
	$(PULUMI) destroy --stack $(STACK) --yes

# --- AWS stacks (prod, staging) ----------------------------------------------------
# State in an S3 bucket and secrets under a KMS key, both the operator's:
#   make aws-preview STACK=prod STATE=s3://<bucket>/wondernest SECRETS='awskms://alias/<key>?region=eu-west-1'
AWS_PULUMI = PULUMI_BACKEND_URL=$(STATE) pulumi

aws-check:
	@test "$(STACK)" != dev || { echo "error: STACK=dev is the local stack: use make up / make preview" >&2; exit 2; }
	@test -n "$(STATE)" || { echo "error: set STATE=s3://<bucket>/<prefix>, the state backend" >&2; exit 2; }
	@test -n "$(SECRETS)" || { echo "error: set SECRETS='awskms://alias/<key>?region=<region>', the secrets provider" >&2; exit 2; }

# The images are built and pushed from this machine, so the Docker engine is checked too.
aws-ready: aws-check preflight $(VENV)/.config
	$(PY) -m components.commands.check_config $(STACK)

aws-preview: aws-ready $(VENV)/.program policies/venv/.installed
	$(AWS_PULUMI) stack select --create --secrets-provider '$(SECRETS)' $(STACK)
	@echo "preview of $(STACK), refreshed from AWS first: drift shows as changes"
	$(AWS_PULUMI) preview --stack $(STACK) --diff --refresh $(POLICIES)

# No --yes: a person reads the plan and confirms it.
aws-up: aws-ready $(VENV)/.program policies/venv/.installed
	$(AWS_PULUMI) stack select --create --secrets-provider '$(SECRETS)' $(STACK)
	$(AWS_PULUMI) up --stack $(STACK) --diff --refresh $(POLICIES)

# Once per account: the state bucket and the secrets key an AWS stack needs
# before its first up; prints the STATE and SECRETS to pass to the aws-* targets.
# make aws-bootstrap BUCKET=<state bucket> REGION=eu-west-1 [ALIAS=wondernest-pulumi]
aws-bootstrap: $(VENV)/.config
	@$(call need,aws,the aws CLI is not on PATH)
	@test -n "$(BUCKET)" -a -n "$(REGION)" || { echo "error: make aws-bootstrap BUCKET=<state bucket> REGION=<region>" >&2; exit 2; }
	$(PY) -m components.commands.bootstrap --bucket '$(BUCKET)' --region '$(REGION)' $(if $(ALIAS),--alias '$(ALIAS)')

# A backup now, as the service takes one at each slot (dumped, proven by a restore,
# copied to the bucket), by a one-off task of the backups task definition.
aws-backup: aws-check $(VENV)/.config
	@$(call need,aws,the aws CLI is not on PATH)
	@$(AWS_PULUMI) stack output --stack $(STACK) --json | $(PY) -m components.commands.aws_backup --stack $(STACK)

# A service's log through `aws logs tail` (the last hour; SINCE=2h, FOLLOW=1); without SERVICE, the services.
SINCE ?= 1h
aws-logs: aws-check $(VENV)/.config
	@$(call need,aws,the aws CLI is not on PATH)
	@$(AWS_PULUMI) stack output --stack $(STACK) --json \
	  | $(PY) -m components.commands.aws_logs --stack $(STACK) --since $(SINCE) $(SERVICE) $(if $(filter 1,$(FOLLOW)),--follow)

# A dump from the backups bucket restored into RDS by a one-off task of the
# restore task definition, waited for (docs/aws.md, "Restoring"). Without ID,
# the backups are listed: make aws-restore STACK=prod [ID=<backup> TARGET=<db> [FORCE=1]]
aws-restore: aws-check $(VENV)/.config
	@$(call need,aws,the aws CLI is not on PATH)
	@$(AWS_PULUMI) stack output --stack $(STACK) --json \
	  | $(PY) -m components.commands.aws_restore --stack $(STACK) $(ID) $(if $(TARGET),--target-db $(TARGET)) $(if $(filter 1,$(FORCE)),--force)

# Forward 127.0.0.1:$(TUNNEL_PORT) to the database through the SSM bastion (aws.adminBastion).
TUNNEL_PORT ?= 15432
tunnel: aws-check
	@$(call need,aws,the aws CLI is not on PATH (and the Session Manager plugin with it))
	@$(call need,pulumi,the Pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/))
	@command=$$($(AWS_PULUMI) stack output --stack $(STACK) --json \
	  | python3 -m components.commands.tunnel $(TUNNEL_PORT) $(STACK)); echo "$$command"; eval "exec $$command"
