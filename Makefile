# MedVault: `make run` starts the app, `make test` runs the tests. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install ohif worker clean-venv cluster cluster-stop

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[train,test]"
	touch $(STAMP)

# OHIF Viewer (npm @ohif/app, pinned and integrity-checked in the script) into .ohif/ (git-ignored).
OHIF_STAMP := .ohif/.installed-3.13.2
$(OHIF_STAMP): scripts/fetch_ohif.sh
	OHIF_FORCE=1 scripts/fetch_ohif.sh

ohif: $(OHIF_STAMP)

install: $(STAMP) $(OHIF_STAMP)

run: $(STAMP) $(OHIF_STAMP)
	$(BIN)/medvault migrate --noinput
	$(BIN)/medvault collectstatic --noinput -v0
	$(BIN)/medvault ensure_admin
	$(BIN)/medvault serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(OHIF_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# Local scale-out cluster on loopback (nginx + 2 app servers + 1 worker, PostgreSQL); see docs/operations.md.
cluster: $(STAMP)
	scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop
