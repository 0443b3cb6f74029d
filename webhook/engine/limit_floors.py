"""The least limits podmedic's init containers are given, whatever lowers them: the quota-charge
cap (init_resources) and the LimitRange fit (limitrange) both read them here. A leaf, so that
those two import it and each other one way only. Pure.
"""

# Why each floor exists. Each init container (`podmedic toolbox install`, `podmedic logdir`) is
# one Python interpreter.
# - memory 32Mi, applied by both: memory is incompressible (cpu only throttles), so under a lower
#   limit they are OOM-killed at every start and the pod never starts (Init:CrashLoopBackOff),
#   worse than not injecting. Measured on a real node (cgroup v1, the podmedic image, peak RSS
#   about 14 MB in /usr/bin/time, tests/node/test_init_memory.py): both were killed under 12Mi
#   and ran under 14Mi (before the CLI imported only the invoked command: killed under 26Mi, ran
#   under 28-30Mi). 32Mi is that with more than twice the margin (page cache, another kernel or
#   Python); the configured requests (16Mi) stay what they are: a request only places the pod.
# - cpu 50m, applied by the quota-charge cap only (a LimitRange's `max` may lower a cpu limit to
#   the configured request: only slower): on the real node (tests/node/test_init_resources.py) an
#   app at cpu 10m started about 50 s after the same pod without podmedic (20 s per init
#   container), at 20m 25 s, at 50m 10 s, at the configured 100m 5 s; since the image's standard
#   library is precompiled (93b54bd), about 2 s at 50m. Below 50m a small app's limits.cpu charge
#   rises to it (still half the configured 100m).
MEMORY_LIMIT_FLOOR = "32Mi"
CPU_LIMIT_FLOOR = "50m"
