# podmedic developer entry points. Everything runs from a local virtualenv (.venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8443
PYTEST_ARGS ?=
IMAGE   ?= ghcr.io/podmedic/podmedic:0.1.0
OVERLAY ?= self-managed

.PHONY: venv run lint test soak bench bench-janitor toolbox certs golden image image-archive deploy undeploy clean

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
	@echo "podmedic: starting https://127.0.0.1:$(PORT)/mutate (PORT=... for another port); once it listens, try:"
	@echo "  curl --cacert certs/ca.crt -H 'Content-Type: application/json' --data @examples/review.json https://127.0.0.1:$(PORT)/mutate"
	$(BIN)/podmedic serve --bind 127.0.0.1:$(PORT) \
	  --tls-cert-file certs/tls.crt --tls-private-key-file certs/tls.key \
	  --namespaces-file examples/namespaces.yaml

# The in-pod toolbox: the package's scripts plus static busybox and tini from Debian's
# busybox-static and tini packages (installed by .ci/run; `apt-get install busybox-static tini`).
toolbox: venv
	$(BIN)/podmedic toolbox build build/toolbox

# Checked before any test runs: the layering contracts (pyproject.toml [tool.importlinter]) and
# mypy --strict over webhook/ ([tool.mypy]).
lint: venv
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate tests/golden/*.injected.* and *.explain.txt after an intended change; review the diff.
golden: venv
	PODMEDIC_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests/cli/test_golden.py

# The long versions: 10 000 fuzzed reviews per property, a minute of load per reliability test.
soak: venv
	PODMEDIC_FUZZ_EXAMPLES=10000 PODMEDIC_SOAK_SECONDS=60 $(BIN)/python -m pytest -q \
	  tests/admission/test_fuzz.py tests/server/test_reliability.py $(PYTEST_ARGS)

bench: venv certs
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

# One `podmedic logs janitor` run over 100 000 pod log directories on tmpfs: time and peak RSS.
bench-janitor: venv
	$(BIN)/python -m tests.bench.janitor

# The container image (Dockerfile). Needs a running engine (docker daemon or podman); without one
# it says so and exits 1 -- a docker client with no daemon does not count. Where the base images
# cannot be pulled (no registry), local stand-ins are built from Debian packages with mmdebstrap
# (as root, once). Settings, passed through the environment or make's command line:
# BUILD_IMAGE, RUNTIME_IMAGE, BASE_IMAGES=auto|upstream|standin, BUILD_CA_FILE (default
# $PIP_CERT), CONTAINER_ENGINE -- see deploy/build-image.
IMAGE_ARCHIVE ?= build/podmedic-image.tar

image:
	deploy/build-image $(IMAGE)

# The image as an archive to import into a node without a registry (OCI with podman, docker's
# format with docker), e.g. for `kind load image-archive` or `ctr images import`
image-archive:
	deploy/build-image --save $(IMAGE_ARCHIVE) $(IMAGE)

# Install into kubectl's current context. self-managed: then create (or renew) the CA, the serving
# Secret and the caBundle. OVERLAY=cert-manager needs cert-manager installed first.
deploy: venv
	kubectl apply -k deploy/overlays/$(OVERLAY)
	@if [ "$(OVERLAY)" = self-managed ]; then \
	  $(BIN)/podmedic certs install --webhook podmedic --secret podmedic-system/podmedic-tls; fi
	kubectl -n podmedic-system rollout status deployment/podmedic --timeout=180s

undeploy:
	kubectl delete -k deploy/overlays/$(OVERLAY) --ignore-not-found

clean:
	rm -rf build .pytest_cache .hypothesis
