# The two commands a fresh machine needs: `make up` (the local dev stack) and
# `make test` (lint, types, and every test). See README.md.

VENV      ?= venv
PY        := $(VENV)/bin/python
STATE_DIR := $(CURDIR)/.pulumi-state
# A file backend inside the checkout: no cloud account, no global `pulumi login`.
PULUMI    := PULUMI_BACKEND_URL=file://$(STATE_DIR) \
             PULUMI_CONFIG_PASSPHRASE_FILE=$(STATE_DIR)/passphrase pulumi
STACK     ?= dev

.PHONY: venv tools lint typecheck test local-check up preview destroy destroy-all outputs psql aws-check aws-preview aws-up tunnel

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# checkov pins its own dependency tree, so it lives in a venv of its own.
TOOLS := $(CURDIR)/.tools
tools: $(TOOLS)/checkov/bin/checkov

$(TOOLS)/checkov/bin/checkov:
	python3 -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy .
	$(VENV)/bin/mypy policies/__main__.py

test: lint typecheck
	$(PY) -m pytest

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
	@test "$(STACK)" = dev || { echo "$(STACK) is an AWS stack: use make aws-preview / make aws-up"; exit 2; }

up: local-check venv policies/venv/.installed $(STATE_DIR)/passphrase
	$(PULUMI) stack select --create --secrets-provider passphrase $(STACK)
	$(PULUMI) up --stack $(STACK) --yes $(POLICIES)

preview: local-check venv policies/venv/.installed $(STATE_DIR)/passphrase
	$(PULUMI) stack select --create --secrets-provider passphrase $(STACK)
	$(PULUMI) preview --stack $(STACK) --diff $(POLICIES)

outputs: $(STATE_DIR)/passphrase
	$(PULUMI) stack output --stack $(STACK) --show-secrets

# psql as one of the platform's roles: make psql ROLE=app|analytics|monitoring|superuser
ROLE ?= app
psql: venv $(STATE_DIR)/passphrase
	@eval "$$($(PULUMI) stack output --stack $(STACK) --show-secrets --json \
	  | $(PY) -m components.connect $(ROLE))" && psql

# Everything but the protected Postgres volume and the superuser password it was
# initialised with: the next `make up` finds the data again.
destroy: $(STATE_DIR)/passphrase
	$(PULUMI) destroy --stack $(STACK) --exclude-protected --yes

# Everything, data included.
destroy-all: $(STATE_DIR)/passphrase
	$(PULUMI) state unprotect --stack $(STACK) --all --yes
	$(PULUMI) destroy --stack $(STACK) --yes

# --- AWS stacks (prod, staging) ----------------------------------------------------
# State in an S3 bucket and secrets under a KMS key, both the operator's:
#   make aws-preview STACK=prod STATE=s3://<bucket>/wondernest SECRETS='awskms://alias/<key>?region=eu-west-1'
AWS_PULUMI = PULUMI_BACKEND_URL=$(STATE) pulumi

aws-check:
	@test "$(STACK)" != dev || { echo "STACK=dev is the local stack: use make up / make preview"; exit 2; }
	@test -n "$(STATE)" || { echo "set STATE=s3://<bucket>/<prefix>, the state backend"; exit 2; }
	@test -n "$(SECRETS)" || { echo "set SECRETS='awskms://alias/<key>?region=<region>', the secrets provider"; exit 2; }

aws-preview: venv policies/venv/.installed aws-check
	$(AWS_PULUMI) stack select --create --secrets-provider '$(SECRETS)' $(STACK)
	$(AWS_PULUMI) preview --stack $(STACK) --diff $(POLICIES)

# No --yes: a person reads the plan and confirms it.
aws-up: venv policies/venv/.installed aws-check
	$(AWS_PULUMI) stack select --create --secrets-provider '$(SECRETS)' $(STACK)
	$(AWS_PULUMI) up --stack $(STACK) --diff $(POLICIES)

# Forward 127.0.0.1:$(TUNNEL_PORT) to the database through the SSM bastion (aws.adminBastion).
TUNNEL_PORT ?= 15432
tunnel: venv aws-check
	$(AWS_PULUMI) stack output --stack $(STACK) --json | $(PY) -m components.tunnel $(TUNNEL_PORT)
