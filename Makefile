# The two commands a newcomer needs: `make demo` and `make test`. Both bootstrap first (idempotent).
SHELL := /bin/bash
VENV := .venv/bin
RISKRAY := $(VENV)/riskray

.PHONY: bootstrap demo test unit stack-up stack-status stack-down

bootstrap:
	@bash cluster/local/bootstrap.sh

# The main job, as far as the loop is built: the stack, the streaming job, 30 s of live transactions, and what
# the feature store made of them. The stack stays up to explore; `make stack-down` stops it.
demo: bootstrap
	$(RISKRAY) stack up
	$(RISKRAY) stream start
	$(RISKRAY) simulate --rate 500 --duration 30
	@sleep 5
	$(RISKRAY) stream status
	$(RISKRAY) stack status

# Bootstrap, start the stack, run every test (unit and integration, against the real services), stop the stack.
test: bootstrap
	@$(RISKRAY) stack up; rc=$$?; \
	if [ $$rc -eq 0 ]; then $(VENV)/pytest -ra; rc=$$?; fi; \
	$(RISKRAY) stack down >/dev/null || rc=1; \
	exit $$rc

unit: bootstrap
	$(VENV)/pytest -ra tests/unit

stack-up: bootstrap
	$(RISKRAY) stack up

stack-status:
	$(RISKRAY) stack status

stack-down:
	$(RISKRAY) stack down
