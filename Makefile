# The two commands a newcomer needs: `make demo` and `make test`. Both bootstrap first (idempotent).
SHELL := /bin/bash
VENV := .venv/bin
RISKRAY := $(VENV)/riskray
SERVE_PORT ?= $${RISKRAY_SERVE_PORT:-8000}

.PHONY: bootstrap demo test unit stack-up stack-status stack-down

bootstrap:
	@bash cluster/local/bootstrap.sh

# The demo's closing prediction request
DEMO_BODY = {"amount": 870.0, "merchant_id": 17, "customer_id": 42, "country": "US", "device_type": "web"}

# The main job: the stack, the streaming job, three days of history through Kafka into the feature store, a model
# trained on it (Tune CV + Ray Train, registered in MLflow) and promoted, the prediction API on Ray Serve, and a
# prediction. The stack stays up to explore; `make stack-down` stops it.
demo: bootstrap
	$(RISKRAY) stack up
	@# History must reach the stream before live events, or its watermark calls it late: fresh stream state,
	@# backfill into Kafka, then start (the first batch reads it all).
	@$(RISKRAY) stream stop >/dev/null 2>&1 || true
	$(RISKRAY) stream reset
	$(RISKRAY) simulate --mode backfill --days 3
	$(RISKRAY) stream start
	$(RISKRAY) simulate --rate 500 --duration 20
	@sleep 10
	$(RISKRAY) stream status
	@# time-forward CV on 3 days: 2.4 hours between each fold's training and validation rows (the default gap,
	@# the 7-day label delay, wants a longer history)
	$(RISKRAY) train --since "$$(date -u -d '3 days ago' +%Y-%m-%dT00:00:00)" --trials 2 --cv-gap-days 0.1
	$(RISKRAY) promote
	$(RISKRAY) serve deploy
	@echo '$$ curl -s -X POST localhost:$(SERVE_PORT)/predict -H "content-type: application/json" -d $(DEMO_BODY)'
	@curl -s -X POST http://127.0.0.1:$(SERVE_PORT)/predict -H 'content-type: application/json' -d '$(DEMO_BODY)'; echo
	$(RISKRAY) stack status

# Bootstrap, start the stack, run every test (unit and integration, against the real services), stop the stack.
# The stack runs in the tests' scratch world (tests/scratch.env: own database, topics, registered model), so the
# suite never writes into the store the demo and your own work use.
test: bootstrap
	@set -a; . tests/scratch.env; set +a; \
	$(RISKRAY) stack up; rc=$$?; \
	if [ $$rc -eq 0 ]; then $(VENV)/pytest -ra --durations=15; rc=$$?; fi; \
	$(RISKRAY) stack down >/dev/null || rc=1; \
	exit $$rc

unit: bootstrap
	@set -a; . tests/scratch.env; set +a; $(VENV)/pytest -ra tests/unit

stack-up: bootstrap
	$(RISKRAY) stack up

stack-status:
	$(RISKRAY) stack status

stack-down:
	$(RISKRAY) stack down
