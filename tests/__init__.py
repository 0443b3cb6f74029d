"""podmedic's tests: one folder per sub-package of webhook/ (engine, admission, server, kube, pki,
cli; runtime for the in-pod toolbox), the cross-cutting ones (integration, deploy, policy, docs,
layout, image) here beside the shared helpers, bench/ for `make bench` and node/ for real pods."""
