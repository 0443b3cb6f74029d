# podmedic developer entry points. Everything runs from a local virtualenv (.venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8443
PYTEST_ARGS ?=

.PHONY: venv run test soak bench toolbox certs golden clean

# The stamp is the console script: re-installed when pyproject.toml changes.
$(BIN)/podmedic: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/podmedic

# Idempotent: keeps a valid pair, renews it at 2/3 of its validity.
certs: | $(BIN)/podmedic
	$(BIN)/podmedic certs init --out certs --host 127.0.0.1 --host localhost

run: venv certs
	@echo "podmedic: serving https://127.0.0.1:$(PORT)/mutate -- try:"
	@echo "  curl --cacert certs/ca.crt -H 'Content-Type: application/json' --data @examples/review.json https://127.0.0.1:$(PORT)/mutate"
	$(BIN)/podmedic serve --bind 127.0.0.1:$(PORT) \
	  --tls-cert-file certs/tls.crt --tls-private-key-file certs/tls.key \
	  --namespaces-file examples/namespaces.yaml

# The in-pod toolbox: the package's scripts plus static busybox and tini from Debian's
# busybox-static and tini packages (installed by .ci/run; `apt-get install busybox-static tini`).
toolbox: venv
	$(BIN)/podmedic toolbox build build/toolbox

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate tests/golden/*.injected.* and *.explain.txt after an intended change; review the diff.
golden: venv
	PODMEDIC_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests/test_golden.py

# The long versions: 10 000 fuzzed reviews per property, a minute of load per reliability test.
soak: venv
	PODMEDIC_FUZZ_EXAMPLES=10000 PODMEDIC_SOAK_SECONDS=60 $(BIN)/python -m pytest -q \
	  tests/test_fuzz.py tests/test_reliability.py $(PYTEST_ARGS)

bench: venv certs
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis
