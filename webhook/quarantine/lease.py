"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
two replicas run, one acts.

- The holder renews `spec.renewTime` every renew period; every write is a replace guarded by the
  Lease's resourceVersion, so two candidates can never both win one round (the loser gets 409).
- A candidate takes the Lease over only after it has seen the same record unchanged for
  `leaseDurationSeconds` on its *own* monotonic clock: clocks of different nodes are never
  compared (client-go's observedTime).
- The holder counts itself leader only while its last successful renewal is younger than the
  lease duration minus one renew period, so it stops acting before anyone else may start.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("podmedic.quarantine.lease")


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, coordination: Any, namespace: str, name: str, identity: str, *, lease_seconds: int = 15,
                 renew_seconds: float = 2.0):
        self._api = coordination
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None

    def leading(self) -> bool:
        """True while this instance may act (checked before every write)."""
        return (self._renewed_at is not None
                and time.monotonic() - self._renewed_at < self.lease_seconds - self.renew_seconds)

    def renew_if_due(self) -> bool:
        """During a long pass: renew once a renew period has passed since the last renewal, so a
        pass longer than the lease keeps it; returns leading(). Never acquires a lease this
        instance did not hold (a pass runs only while leading)."""
        if self._renewed_at is not None and time.monotonic() - self._renewed_at >= self.renew_seconds:
            self.try_acquire_or_renew()
        return self.leading()

    def try_acquire_or_renew(self) -> bool:
        """One round; never raises (an API error is a lost round)."""
        from kubernetes.client.exceptions import ApiException

        try:
            lease = json.loads(self._api.read_namespaced_lease(self.name, self.namespace, _preload_content=False,
                                                               _request_timeout=(2.0, 5.0)).data)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("cannot read lease %s/%s: HTTP %s", self.namespace, self.name, exc.status)
                return self.leading()
            return self._write(None)
        except Exception as exc:
            log.warning("cannot read lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
            return self.leading()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and now - self._observed_at < duration:
            self._renewed_at = None
            return False
        return self._write(lease)

    def _write(self, lease: dict[str, Any] | None) -> bool:
        from kubernetes.client.exceptions import ApiException

        now = _micro_now()
        spec = (lease or {}).get("spec") or {}
        mine = spec.get("holderIdentity") == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine or lease is None else 1)
        body: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                         "acquireTime": spec.get("acquireTime") if mine else now, "renewTime": now,
                         "leaseTransitions": transitions}}
        started = time.monotonic()
        try:
            if lease is None:
                self._api.create_namespaced_lease(self.namespace, body, _request_timeout=(2.0, 5.0))
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                self._api.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=(2.0, 5.0))
        except ApiException as exc:
            if exc.status != 409:  # 409: someone else wrote first this round
                log.warning("cannot write lease %s/%s: HTTP %s", self.namespace, self.name, exc.status)
            return self.leading()
        except Exception as exc:
            log.warning("cannot write lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
            return self.leading()
        if not mine:
            log.info("%s now leads (lease %s/%s)", self.identity, self.namespace, self.name)
        self._renewed_at = started
        return True

    def release(self) -> None:
        """On shutdown: hand the lease over at once (empty holder) if this instance holds it."""
        if not self.leading():
            return
        try:
            lease = json.loads(self._api.read_namespaced_lease(self.name, self.namespace, _preload_content=False,
                                                               _request_timeout=(2.0, 5.0)).data)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                self._api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=(2.0, 5.0))
        except Exception as exc:
            log.warning("cannot release lease %s/%s: %s", self.namespace, self.name, type(exc).__name__)
        self._renewed_at = None
