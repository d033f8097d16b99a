# pi07: two commands on a fresh machine (README.md):
#   make demo   the full stack closed loop on the embedded simulated robot
#   make test   lint + unit tests + cross-process tests
# Both run scripts/setup.sh first (idempotent: seconds when nothing changed).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup build test lint demo bench clean

help:
	@echo "make demo   set up (first run), then the full stack closed loop on the simulated robot (both embodiments)"
	@echo "make test   set up (first run), lint, run all tests"
	@echo "make setup  venv + ROS 2 wheels + pinned deps + colcon build (idempotent)"
	@echo "make bench  benchmarks (figures printed and written to out/bench/)"

setup:
	@bash scripts/setup.sh

build:
	@bash scripts/build.sh --force

lint: setup
	@bash -c 'source scripts/env.sh && ruff check .'

test: setup
	@bash scripts/run_tests.sh

demo:
	@bash scripts/demo.sh $(DEMO_ARGS)

bench: setup
	@bash -c 'source scripts/env.sh && for b in bench/bench_*.py; do python "$$b" || exit 1; done'

clean:
	rm -rf build install log out
