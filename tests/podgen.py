"""Seeded random pods that the API server should accept, mixing what podmedic must work around:
several containers and init containers (restartPolicy: Always sidecars among them), named and
numbered ports (the same number in two containers, hostPort, UDP, SCTP), the app's own probes and
hooks of every kind (named ports), env with $(VAR) references and valueFrom (and a Secret's value
written inline, SECRET), mounts with subPath, subPathExpr, readOnly and mountPropagation,
securityContext variants, requests only, limits only and pod-level resources (tight ones too),
host namespaces, shared PID namespace, os.name, restartPolicy, a grace period of 0, podmedic.io/*
annotations with valid and invalid values, container names up to 63 characters; from a second
stream, the app's labels, annotations (a safe-to-evict list too), ownerReferences and generateName,
and clashes with podmedic's mount paths, env var names and volume names.

Plain `random` with a fixed seed: the same seed gives the same pods on every machine, so a
failure names the pod that shows it. Some pods are invalid (a Windows pod with Linux-only
fields, a sleep hook longer than the grace period): the API server's refusal sorts them out.
"""

from __future__ import annotations

import random
from typing import Any

SECRET = "s3cr3t-podgen-9f1c2d"  # an inline env value of a *_PASSWORD variable: never in a warning
PREFIX = "podmedic.io/"
SWITCHES = ("inject", "probes", "supervisor", "logs", "forensics")
ANNOTATIONS = {
    "probes": ["enabled", "disabled", "bogus"], "supervisor": ["enabled", "disabled", "on"],
    "logs": ["enabled", "disabled"], "forensics": ["enabled", "disabled"], "inject": ["enabled", "disabled"],
    "probe-port": ["8080", "http", "0", "99999", "metrics", "nosuch"],
    "readiness-path": ["/ready", "health", "/a b"], "liveness-path": ["/livez", ""],
    "readiness-command": ['["cat", "/tmp/ready"]', "not json", "[]"], "liveness-command": ['["true"]'],
    "startup-timeout": ["3m", "25h", "-1s", "0s"], "probe-period-seconds": ["7", "0", "x"],
    "probe-timeout-seconds": ["3", "-2"], "entrypoint": ['["/bin/app"]', "/bin/app"],
    "autorestart": ["true", "false", "maybe"], "exitcodes": ["0,2", "0,300"], "stopsignal": ["TERM", "KILL", "USR9"],
    "on-fatal": ["exit", "hold", "explode"], "max-hold": ["60", "-1"],
    "log-path": ["/var/log/app", "relative", "/podmedic"], "forensics-budget-seconds": ["5", "0", "301"],
}
Pod = dict[str, Any]


# What the app may already use of podmedic's: its mount paths (as written, and spelled otherwise:
# the runtime normalises them), its env var names, its volume names. podmedic must skip what would
# clash (mount-conflict, env-conflict, name-conflict), never hide the app's own.
CLASHING_MOUNTS = ("/podmedic", "/podmedic/", "//podmedic/bin", "/podmedic-state", "/podmedic-state/x",
                   "/var/log/podmedic", "/var/log/podmedic/", "/var/log/app")
CLASHING_ENV = ("PODMEDIC_POD_NAME", "PODMEDIC_POD_UID")
CLASHING_VOLUMES = ("podmedic-toolbox", "podmedic-state", "podmedic-logs")
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"


def pods(seed: int, count: int) -> list[Pod]:
    """Drawn from two streams: `extra` (clashes and metadata) leaves the pods of `r` as they were.
    Its seed is a string: Random(-seed) is Random(seed) (an int seeds from its absolute value)."""
    r, extra = random.Random(seed), random.Random(f"{seed}-meta")
    return [_clash(extra, _metadata(extra, _pod(r, i))) for i in range(count)]


def _metadata(r: random.Random, pod: Pod) -> Pod:
    """The app's own labels, annotations, owner and generateName: podmedic must keep them (it
    adds only its marker and its volumes to a safe-to-evict list the app may have written)."""
    meta = pod["metadata"]
    if r.random() < 0.4:
        meta["labels"] = {"app": "web", "podmedic.io/inject": "enabled"}
    if r.random() < 0.3:
        meta.setdefault("annotations", {})["example.com/note"] = r.choice(["a", "", '{"x": 1}'])
    if r.random() < 0.25:
        meta.setdefault("annotations", {})[SAFE_TO_EVICT] = r.choice(["data", "data,cache", "", "x, ", "podmedic-state"])
    if r.random() < 0.3:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f",
                                    "uid": f"6f1c2d3e-0000-4000-8000-00000000000{r.randint(0, 9)}",
                                    "controller": True, "blockOwnerDeletion": True}]
    if r.random() < 0.2:
        meta["generateName"] = "web-5d4f-"
    return pod


def _clash(r: random.Random, pod: Pod) -> Pod:
    """Now and then a container that mounts something where podmedic would, or defines its env
    vars, or a volume with podmedic's name."""
    spec = pod["spec"]
    containers = spec["containers"] + spec.get("initContainers", [])
    if r.random() < 0.15:
        name = r.choice(CLASHING_VOLUMES) if r.random() < 0.3 else "vclash"
        spec.setdefault("volumes", []).append({"name": name, "emptyDir": {}})
        c = r.choice(containers)
        c.setdefault("volumeMounts", []).append({"name": name, "mountPath": r.choice(CLASHING_MOUNTS)})
    if r.random() < 0.1:
        r.choice(containers).setdefault("env", []).append({"name": r.choice(CLASHING_ENV), "value": "app's"})
    return pod


def _name(r: random.Random, length: int) -> str:
    """A DNS-1123 label of `length` characters (at most 63, as container names are)."""
    middle = "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(length - 2))
    return r.choice("abcdefghij") + middle + r.choice("abcxyz0189")


def _handler(r: random.Random, port_names: list[str], probe: bool) -> dict[str, Any]:
    port: int | str = r.choice(port_names) if port_names and r.random() < 0.6 else r.choice([8080, 9090, 80])
    kind = r.choice(["exec", "httpGet", "tcpSocket", "grpc" if probe else "sleep"])
    if kind == "exec":
        return {"exec": {"command": r.choice([["cat", "/tmp/ok"], ["sh", "-c", "echo $(HOME) > /dev/null"]])}}
    if kind == "httpGet":
        get: dict[str, Any] = {"path": r.choice(["/", "/healthz", "/a?b=c"]), "port": port}
        if r.random() < 0.3:
            get["scheme"] = "HTTPS"
        if r.random() < 0.2:
            get["httpHeaders"] = [{"name": "X-Token", "value": "abc"}]
        return {"httpGet": get}
    if kind == "tcpSocket":
        return {"tcpSocket": {"port": port}}
    if kind == "grpc":
        return {"grpc": {"port": r.choice([8080, 9090])}}
    return {"sleep": {"seconds": r.choice([0, 1, 5])}}


def _probe(r: random.Random, port_names: list[str], readiness: bool) -> dict[str, Any]:
    probe = _handler(r, port_names, True)
    for key, values in (("periodSeconds", [1, 10]), ("timeoutSeconds", [1, 5]), ("initialDelaySeconds", [0, 3]),
                        ("failureThreshold", [1, 3])):
        if r.random() < 0.3:
            probe[key] = r.choice(values)
    if not readiness and r.random() < 0.5:
        probe["successThreshold"] = 1
    return probe


def _ports(r: random.Random, host_ports: set[tuple[int, str]], host_network: bool) -> list[dict[str, Any]]:
    """Unique (number, protocol) and names within the container, the same across containers; a
    hostPort once per pod (with hostNetwork: every port, equal to its containerPort)."""
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for _ in range(r.choice([0, 1, 1, 2, 3])):
        number, protocol = r.choice([80, 8080, 8080, 9090, 53, 5000]), r.choice(["TCP", "TCP", "UDP", "SCTP", None])
        key, name = (number, protocol or "TCP"), r.choice(["http", "metrics", "grpc", "dns", f"web-{number}", None])
        if key in seen or (name and name in seen) or (host_network and key in host_ports):
            continue
        seen |= {key, name}
        port: dict[str, Any] = {"containerPort": number, **({"protocol": protocol} if protocol else {}),
                                **({"name": name} if name else {})}
        if (host_network or r.random() < 0.15) and key not in host_ports:
            host_ports.add(key)
            port["hostPort"] = number
        out.append(port)
    return out


def _env(r: random.Random, containers: list[str]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "BASE", "value": "/srv"}]
    optional = [
        {"name": "DB_PASSWORD", "value": SECRET},
        {"name": "DERIVED", "value": "$(BASE)/data:$(MISSING):$$(ESCAPED)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token", "optional": True}}},
        {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
        {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                                  "containerName": r.choice(containers)}}},
        {"name": "PATH", "value": "/bin:$(BASE)/bin"},
        {"name": "spring.datasource.password", "value": SECRET},
    ]
    return env + [e for e in optional if r.random() < 0.35]


def _mounts(r: random.Random, volumes: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for volume in r.sample(volumes, r.randint(0, len(volumes))):  # a mountPath per volume: never twice
        mount: dict[str, Any] = {"name": volume, "mountPath": r.choice(["/data", "/etc/cfg", "/var/log"]) + "/" + volume}
        x = r.random()
        if x < 0.2:
            mount["subPath"] = "sub/dir"
        elif x < 0.35:  # POD_NAME is in env only sometimes: the kubelet's concern, not the API server's
            mount["subPathExpr"] = "$(POD_NAME)"
        if r.random() < 0.3:
            mount["readOnly"] = True
        elif r.random() < 0.15:
            mount["mountPropagation"] = "HostToContainer"
        out.append(mount)
    return out


def _security(r: random.Random) -> dict[str, Any]:
    sc: dict[str, Any] = {}
    if r.random() < 0.3:
        sc.update(runAsNonRoot=True, runAsUser=r.choice([1000, 65534]))
    if r.random() < 0.3:
        sc["readOnlyRootFilesystem"] = True
    if r.random() < 0.3:
        sc.update(capabilities={"drop": ["ALL"]}, allowPrivilegeEscalation=False)
    if r.random() < 0.25:
        sc["seccompProfile"] = {"type": r.choice(["RuntimeDefault", "Unconfined"])}
    return sc


def _resources(r: random.Random) -> dict[str, Any]:
    requests, limits = {"cpu": "50m", "memory": "32Mi"}, {"cpu": "200m", "memory": "128Mi"}
    return r.choice([{}, {}, {"requests": requests}, {"limits": limits}, {"requests": requests, "limits": limits}])


def _container(r: random.Random, name: str, pod: dict[str, Any], init: bool, sidecar: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": r.choice(["registry.example/app:1", "busybox", "nginx@sha256:" + "a" * 64])}
    if r.random() < 0.6:
        c["command"] = r.choice([["/bin/app"], ["sh", "-c", "exec app $(BASE)"], ["python", "-m", "srv"]])
    if r.random() < 0.4:
        c["args"] = r.choice([["--port=8080"], ["$(DERIVED)"], []])
    handlers = not init or sidecar  # the API server forbids probes and hooks on other init containers
    if handlers or r.random() < 0.3:
        c["ports"] = _ports(r, pod["host_ports"], pod["host_network"])
    names = [p["name"] for p in c.get("ports", []) if "name" in p]
    if handlers:
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            if r.random() < 0.3:
                c[kind] = _probe(r, names, kind == "readinessProbe")
        hooks = {hook: _handler(r, names, False) for hook in ("postStart", "preStop") if r.random() < 0.25}
        if hooks:
            c["lifecycle"] = hooks
    fields = {"env": _env(r, pod["containers"]), "envFrom": [{"secretRef": {"name": "s", "optional": True}}],
              "volumeMounts": _mounts(r, pod["volumes"]), "securityContext": _security(r), "resources": _resources(r),
              "terminationMessagePolicy": "FallbackToLogsOnError", "workingDir": "/srv", "stdin": True}
    c.update({k: v for k, v in fields.items() if v and r.random() < (0.8 if k == "env" else 0.5)})
    if sidecar:
        c["restartPolicy"] = "Always"
    return {k: v for k, v in c.items() if v != [] or k == "args"}


def _volumes(r: random.Random) -> list[dict[str, Any]]:
    sources = {"emptyDir": {}, "configMap": {"name": "cm"}, "secret": {"secretName": "s"},
               "hostPath": {"path": "/var/lib/x", "type": "DirectoryOrCreate"}}
    out = []
    for k in range(r.randint(0, 3)):
        kind = r.choice(list(sources))
        out.append({"name": f"v{k}-" + _name(r, 6), kind: sources[kind]})
    return out


def _names(r: random.Random, count: int, taken: set[str], first: str = "") -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = first + _name(r, r.choice([3, 8, 12, 40, 63]) - len(first))
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _pod_resources(r: random.Random, spec: dict[str, Any]) -> None:
    """Pod-level resources: roomy, or exactly what the app's containers ask (podmedic's init
    containers must then fit in what is left, or stay out)."""
    if r.random() < 0.5:
        spec["resources"] = {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}}
        return
    each = {"cpu": "100m", "memory": "64Mi"}
    running = spec["containers"] + [c for c in spec.get("initContainers", []) if c.get("restartPolicy")]
    for c in spec["containers"] + spec.get("initContainers", []):
        c["resources"] = {"requests": dict(each), "limits": dict(each)}
    total = {"cpu": f"{100 * len(running)}m", "memory": f"{64 * len(running)}Mi"}
    spec["resources"] = {"requests": total, "limits": dict(total)}


def _annotations(r: random.Random, containers: list[str]) -> dict[str, str]:
    annotations = {}
    for _ in range(r.choice([0, 0, 1, 2, 4])):
        key = r.choice(list(ANNOTATIONS))
        suffix = "." + r.choice(containers) if key not in SWITCHES and r.random() < 0.2 else ""
        annotations[PREFIX + key + suffix] = r.choice(ANNOTATIONS[key])
    if r.random() < 0.3:
        annotations[PREFIX + "supervisor"] = "enabled"
    return annotations


def _pod(r: random.Random, i: int) -> Pod:
    taken: set[str] = set()
    containers = _names(r, r.choice([1, 1, 2, 3]), taken)
    inits = _names(r, r.choice([0, 0, 1, 2]), taken, first="i")
    volumes = _volumes(r)
    shared = {"host_ports": set(), "host_network": r.random() < 0.1, "containers": containers,
              "volumes": [v["name"] for v in volumes]}
    spec: dict[str, Any] = {"containers": [_container(r, name, shared, False, False) for name in containers]}
    if inits:
        spec["initContainers"] = [_container(r, name, shared, True, r.random() < 0.5) for name in inits]
    choices: dict[str, tuple[float, Any]] = {
        "volumes": (1.0, volumes), "hostNetwork": (1.0, shared["host_network"]),
        "hostPID": (0.1, True), "os": (0.1, {"name": r.choice(["linux", "linux", "windows"])}),
        "restartPolicy": (0.3, r.choice(["Never", "OnFailure", "Always"])),
        "terminationGracePeriodSeconds": (0.2, r.choice([0, 1, 30])),
        "securityContext": (0.2, {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}),
        "automountServiceAccountToken": (0.3, False),
    }
    spec.update({k: v for k, (p, v) in choices.items() if v and r.random() < p})
    if "hostPID" not in spec and r.random() < 0.15:
        spec["shareProcessNamespace"] = True
    if r.random() < 0.2:
        _pod_resources(r, spec)
    metadata: dict[str, Any] = {"name": f"p{i}-" + _name(r, 8)}
    annotations = _annotations(r, containers)
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
