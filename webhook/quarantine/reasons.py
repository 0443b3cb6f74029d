"""The quarantine controller's decisions as data: what it does to a pod and the one table of
reason codes. The same code is the `reason` of the pod's and the owner's Event, the label of
`podmedic_quarantine_decisions_total`, the `quarantine-reason` annotation and what
`podmedic quarantine list` shows (the webhook's engine/decisions.py is the model).
"""

from __future__ import annotations

from enum import Enum, StrEnum


class Action(StrEnum):
    """What the controller does to one pod."""

    QUARANTINE = "quarantine"  # relabel out of its owner: the owner creates a replacement
    MARK = "mark"              # a bare pod: nothing would replace it, so only the label and annotations
    SKIP = "skip"              # a candidate left alone, for the reason given (an event says so once)
    DELETE = "delete"          # a quarantined pod at its expiry, or whose owner is gone


# The Event reason (CamelCase, as Kubernetes events are named) of each action.
EVENT_REASON = {Action.QUARANTINE: "Quarantined", Action.MARK: "Quarantined",
                Action.SKIP: "QuarantineSkipped", Action.DELETE: "Expired"}
RELEASED_EVENT = "Released"


class Reason(str, Enum):
    """A decision's reason code (the value: stable, kebab-case) and its text for humans."""

    text: str

    def __new__(cls, code: str, text: str) -> "Reason":
        obj = str.__new__(cls, code)
        obj._value_ = code
        obj.text = text
        return obj

    # -- quarantined or marked
    HELD = ("held", "the supervisor holds a FATAL container; the pod is kept and its owner replaces it")
    NOT_READY = ("not-ready", "NotReady with its containers running; the pod is kept and its owner replaces it")
    BARE_POD = ("bare-pod", "no owner would replace this pod: marked only, never relabelled or deleted")
    # -- skipped: the kind of owner
    STATEFULSET = ("statefulset", "a StatefulSet cannot replace a released pod (kubernetes#46901): kept holding in place")
    DAEMONSET_DISABLED = ("daemonset-disabled", "DaemonSet pods are not quarantined (quarantine-daemonset: disabled)")
    DAEMONSET_HOST_PORT = ("daemonset-host-port", "a DaemonSet pod with a hostPort or hostNetwork: its replacement, on the same node, "
                           "could not bind the port the kept pod holds")
    RECREATE_STRATEGY = ("recreate-strategy", "its Deployment's strategy is Recreate: a replacement would run "
                         "beside the kept pod, which that strategy promises never to do")
    JOB_APP_RUNNING = ("job-app-running", "a Job's pod that the supervisor does not hold: its app may still run, "
                       "and a replacement would run the job's work a second time beside it")
    EXCLUSIVE_VOLUME = ("exclusive-volume", "it uses a PersistentVolumeClaim only one pod (ReadWriteOncePod) or one "
                        "node (ReadWriteOnce) can use, or one not found: the replacement could not run")
    OWNER_KIND_UNSUPPORTED = ("owner-kind-unsupported", "its controller is not a ReplicaSet, Job or DaemonSet")
    OWNER_NOT_FOUND = ("owner-not-found", "its controller was not found; nothing is done until it is")
    SELECTOR_UNREMOVABLE = ("selector-unremovable", "removing the pod's labels would not take it out of its owner's selector")
    # -- skipped: the caps
    OWNER_CAP = ("owner-cap", "its workload already has quarantine-max-per-owner quarantined pods")
    NAMESPACE_CAP = ("namespace-cap", "the namespace already has quarantine-max-per-namespace quarantined pods")
    SAME_TEMPLATE = ("same-template", "a pod of the same template is already quarantined: this one holds or fails in place")
    # -- skipped: the pre-flight
    PDB_SELECTS = ("pdb-selects", "a PodDisruptionBudget would still select the relabelled pod")
    HPA_SELECTS = ("hpa-selects", "a HorizontalPodAutoscaler's target would still select the relabelled pod")
    HPA_TARGET_UNKNOWN = ("hpa-target-unknown", "a HorizontalPodAutoscaler targets a workload whose selector is unknown")
    SERVICE_SELECTS = ("service-selects", "a Service would still select the relabelled pod")
    ISOLATION_LOST = ("isolation-lost", "removing labels loses NetworkPolicy isolation and no policy isolates quarantined pods")
    QUOTA_EXHAUSTED = ("quota-exhausted", "a ResourceQuota leaves no room for the replacement")
    INVALID_SETTING = ("invalid-setting", "a quarantine annotation has an invalid value")
    # -- deleted
    EXPIRED = ("expired", "quarantine-expiry has passed")
    OWNER_GONE = ("owner-gone", "the workload it was taken from no longer exists")
