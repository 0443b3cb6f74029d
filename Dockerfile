# syntax=docker/dockerfile:1
# podmedic: the webhook server (`podmedic serve`, gunicorn over TLS) and, in the same image, what
# its init containers run (`podmedic toolbox install`, `podmedic logdir`).
#
# Two stages. The build stage has the compilers, pip and apt; the final stage is distroless
# Python -- Debian 12's own python3.11, glibc, no shell, no package manager, no compiler -- and
# receives only /opt/podmedic: the virtualenv and the toolbox. The virtualenv is built against
# the same Debian 12 /usr/bin/python3 that the final stage has, so its interpreter link holds.
#
#   make image            (docker or podman; IMAGE=... to name it; see deploy/build-image for
#                          BUILD_IMAGE/RUNTIME_IMAGE and the local stand-ins built without a registry)
ARG BUILD_IMAGE=docker.io/library/debian:12-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
# python3-venv: the virtualenv; busybox-static, tini (tini-static), gcc, libc6-dev: the in-pod
# toolbox (static busybox and tini copied, static sigreset compiled) -- see docs/toolbox.md.
RUN apt-get update \
 && apt-get install -y --no-install-recommends --no-install-suggests \
      python3-venv busybox-static tini gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/podmedic/venv
WORKDIR /src
# Behind a TLS-intercepting proxy pip must trust its CA: pass the bundle as the optional secret
# `pip-ca` (`--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt`; deploy/build-image does
# when PIP_CERT is set). A secret is mounted for its step only and never lands in a layer.
# The dependencies first, read from pyproject.toml alone: this layer changes only when they do,
# so a rebuild after a code change takes seconds instead of a minute of downloads.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && /opt/podmedic/venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/podmedic/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt
COPY README.md ./
COPY webhook ./webhook
# A regular (not editable) install: the package, its data files and the console script. pip and
# setuptools leave the virtualenv afterwards: nothing in the final image can install software.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && /opt/podmedic/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && /opt/podmedic/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools
# The toolbox at the fixed path `podmedic toolbox install` copies from (its DEFAULT_SOURCE).
RUN /opt/podmedic/venv/bin/podmedic toolbox build /opt/podmedic/toolbox
# The bytecode of everything podmedic imports, the runtime's standard library included, under one
# prefix that the final stage gets (PYTHONPYCACHEPREFIX below). Its stdlib comes from .debs that
# were extracted, never installed, so the postinst that compiles it never ran: every start of an
# init container compiled ~50 modules (0.1 s of cpu) and could keep none (read-only root).
# checked-hash: a .pyc is used only while its source's hash matches, so a runtime whose Debian
# python3.11 revision differs from this stage's still runs its own stdlib (compiled, slower).
# The venv's own __pycache__ goes: with a prefix Python looks nowhere else.
RUN find /opt/podmedic/venv -name __pycache__ -type d -prune -exec rm -rf {} + \
 && PYTHONPYCACHEPREFIX=/opt/podmedic/pycache python3 -m compileall -q -j 0 \
      --invalidation-mode checked-hash /usr/lib/python3.11 /opt/podmedic/venv/lib/python3.11/site-packages

FROM ${RUNTIME_IMAGE}
COPY --from=build /opt/podmedic /opt/podmedic
# PATH first: init containers run `podmedic ...` by name. No .pyc writes: the root filesystem is
# read-only in every pod (the build stage compiled the bytecode into the pycache prefix).
ENV PATH=/opt/podmedic/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPYCACHEPREFIX=/opt/podmedic/pycache \
    PYTHONUNBUFFERED=1
# distroless's `nonroot` user, numerically, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/opt/podmedic/venv/bin/podmedic"]
CMD ["serve"]
