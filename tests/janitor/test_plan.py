"""The janitor's planner (pure): which directories are deleted, which kept, and why."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from webhook.cli.config import load
from webhook.engine.config import GlobalConfig
from webhook.janitor.plan import DELETING, Action, Found, Pod, Policy, Record, Why, parse_entry, plan

DAY = 86400.0
NOW = 1_800_000_000.0
UID = "0f3c2a1e-5b6d-4c7e-8f90-a1b2c3d4e5f6"
OTHER = "9e8d7c6b-5a49-4838-a7b6-c5d4e3f2a1b0"
PREFIX = "podmedic.io/"


def config(**janitor: int) -> GlobalConfig:
    base = load()
    return replace(base, logs=replace(base.logs, janitor=replace(base.logs.janitor, **janitor)))


def found(age_days: float | None, *, ns: str = "team", uid: str = UID, record: Record | None = None,
          problem: str | None = None, entry: str | None = None) -> Found:
    pod_dir = parse_entry("/logs", entry or f"{ns}_web-1_{uid}")
    assert pod_dir is not None
    last = None if age_days is None else int((NOW - age_days * DAY) * 1e9)
    return Found(pod_dir, last, 100, problem, record)


def verdict(f: Found, pods: dict[str, Pod] | None = None, namespaces: dict[str, dict[str, str]] | None = None,
            cfg=None):
    cfg = cfg or config()
    (v,) = plan([f], pods or {}, Policy(cfg, namespaces or {}), cfg.logs.janitor.max_pin, NOW)
    return v


def live(uid: str = UID, annotations: dict[str, str] | None = None, quarantined: bool = False) -> dict[str, Pod]:
    return {uid: Pod(uid, "team", "web-1", annotations or {}, quarantined)}


@pytest.mark.parametrize("entry,expected", [
    (f"team_web-1_{UID}", ("team", "web-1", UID)),
    (f"a_b.c-d_{UID}", ("a", "b.c-d", UID)),
    (f"{DELETING}team_web-1_{UID}", ("team", "web-1", UID)),
    (f"team_web-1_{UID}\n", None),          # a newline: not a candidate
    (f"team_web_1_{UID}", None),            # "_" in the pod name is impossible
    (f"Team_web-1_{UID}", None),
    (f"team_web-1_{UID.upper()}", None),
    ("team_web-1_not-a-uid", None),
    (".", None), ("..", None), ("lost+found", None),
    (f"../team_web-1_{UID}", None),
    (f"team_web-1_{UID}/x", None),
])
def test_only_exact_pod_directory_names_are_candidates(entry, expected):
    parsed = parse_entry("/logs", entry)
    assert (parsed and (parsed.namespace, parsed.pod, parsed.uid)) == expected


def test_a_name_too_long_for_the_deleting_prefix_gets_a_short_deleting_name_that_parses_back():
    pod = ".".join(["a" * 63, "b" * 63, "c" * 63]) + "-xyz"
    long = parse_entry("/logs", f"team_{pod}_{UID}")
    assert long is not None and len(DELETING + long.entry) > 255
    short = parse_entry("/logs", long.deleting_name)
    assert long.deleting_name == f"{DELETING}team_{UID}"
    assert short is not None and (short.namespace, short.pod, short.uid, short.name) == ("team", "", UID, None)
    plain = parse_entry("/logs", f"team_web-1_{UID}")
    assert plain is not None and plain.deleting_name == f"{DELETING}team_web-1_{UID}"
    assert parse_entry("/logs", f"team_{UID}") is None  # the short form only after the prefix


def test_a_live_pods_directory_is_never_deleted_however_old():
    v = verdict(found(365, record=Record()), live())
    assert (v.action, v.why) == (Action.KEEP, Why.POD_EXISTS)


def test_a_dead_pods_directory_is_kept_for_the_default_retention_then_deleted():
    kept = verdict(found(6.9))
    assert (kept.action, kept.why) == (Action.KEEP, Why.RETAINED)
    assert kept.until == pytest.approx(NOW + 0.1 * DAY)
    gone = verdict(found(7.01))
    assert (gone.action, gone.why) == (Action.DELETE, Why.EXPIRED)


def test_another_pods_uid_does_not_protect_a_directory():
    assert verdict(found(8), live(OTHER)).action is Action.DELETE


def test_the_namespace_sets_its_retention():
    annotations = {"team": {PREFIX + "log-retention": "2d"}}
    assert verdict(found(3), namespaces=annotations).action is Action.DELETE
    assert verdict(found(1), namespaces=annotations).action is Action.KEEP
    assert verdict(found(3, ns="other"), namespaces=annotations).action is Action.KEEP  # default 7d


@pytest.mark.parametrize("value,age,action,note", [
    ("10m", 0.5, Action.KEEP, "clamped"),        # below minRetention 1d: a 12-hour-old directory stays
    ("1000d", 100, Action.DELETE, "clamped"),    # above maxRetention 90d
    ("soon", 6, Action.KEEP, "global default"),  # invalid: the 7-day default
    ("soon", 8, Action.DELETE, "global default"),
    ("2d\n", 3, Action.KEEP, "global default"),  # a trailing newline is not 2d
    ("\u0662d", 3, Action.KEEP, "global default"),  # nor is an Arabic-Indic 2
])
def test_retention_is_bounded_by_the_admin_and_falls_back_on_bad_values(value, age, action, note):
    cfg = config(min_retention=int(DAY), max_retention=int(90 * DAY))
    v = verdict(found(age), namespaces={"team": {PREFIX + "log-retention": value}}, cfg=cfg)
    assert v.action is action and note in v.detail


def test_a_quarantined_pods_directory_is_kept_longer():
    annotations = {"team": {PREFIX + "quarantine-log-retention": "3d"}}
    v = verdict(found(9, record=Record(quarantined=True)), namespaces=annotations)
    assert (v.action, v.why) == (Action.KEEP, Why.QUARANTINED)
    assert v.until == pytest.approx(NOW + 1 * DAY)
    assert verdict(found(10.5, record=Record(quarantined=True)), namespaces=annotations).action is Action.DELETE
    assert verdict(found(9, record=Record(quarantined=False)), namespaces=annotations).action is Action.DELETE


def test_a_recorded_pin_keeps_the_directory_until_then_within_max_pin():
    pin = Record(keep_until=NOW + 5 * DAY)
    v = verdict(found(30, record=pin))
    assert (v.action, v.why, v.until) == (Action.KEEP, Why.PINNED, NOW + 5 * DAY)
    assert verdict(found(30, record=Record(keep_until=NOW - 1))).action is Action.DELETE
    far = Record(keep_until=NOW + 3650 * DAY)  # a tenant's "forever" ends maxPin after the last change
    v = verdict(found(30, record=far), cfg=config(max_pin=int(40 * DAY)))
    assert (v.action, v.until) == (Action.KEEP, NOW + 10 * DAY)
    assert verdict(found(41, record=far), cfg=config(max_pin=int(40 * DAY))).action is Action.DELETE


def test_a_live_pods_pin_and_quarantine_state_are_recorded_once():
    pods = live(annotations={PREFIX + "log-keep-until": "2027-01-02T03:04:05Z"}, quarantined=True)
    want = Record(datetime(2027, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp(), True)
    v = verdict(found(None), pods)
    assert (v.action, v.why, v.record) == (Action.RECORD, Why.POD_EXISTS, want)
    again = verdict(found(None, record=want), pods)
    assert (again.action, again.record) == (Action.KEEP, None)


def test_a_bad_pin_is_reported_and_not_recorded():
    v = verdict(found(None), live(annotations={PREFIX + "log-keep-until": "next tuesday"}))
    assert v.record == Record(None, False) and "RFC 3339" in v.detail


def test_a_pin_the_admin_does_not_let_pods_set_is_not_honoured():
    cfg = load()
    cfg = replace(cfg, pod_overridable=cfg.pod_overridable - {"log-keep-until"})
    v = verdict(found(None), live(annotations={PREFIX + "log-keep-until": "2027-01-02T03:04:05Z"}), cfg=cfg)
    assert v.record == Record(None, False) and "not honoured" in v.detail


def test_an_unmeasured_or_unsafe_tree_is_kept():
    for f in (found(None), found(30, problem="a mount point inside")):
        v = verdict(f)
        assert (v.action, v.why) == (Action.KEEP, Why.UNSAFE)


def test_a_begun_deletion_is_resumed_unless_the_pod_exists():
    entry = f"{DELETING}team_web-1_{UID}"
    assert verdict(found(None, entry=entry)).why is Why.RESUMED
    assert verdict(found(None, entry=entry), live()).action is Action.KEEP


def test_a_begun_deletion_with_a_mount_point_inside_is_kept():
    """A run cut short, then a bind mount of the same filesystem put inside: resuming would
    delete what is mounted there (the walk's device check cannot see it)."""
    v = verdict(found(None, entry=f"{DELETING}team_web-1_{UID}", problem="a mount point inside"))
    assert (v.action, v.why, v.detail) == (Action.KEEP, Why.UNSAFE, "a mount point inside")


def test_a_live_pods_unsafe_entry_is_kept_without_a_record():
    v = verdict(found(None, problem="not a directory (a symlink or a file)"), live(quarantined=True))
    assert (v.action, v.why, v.record) == (Action.KEEP, Why.UNSAFE, None)


def test_the_janitors_annotations_are_not_flagged_as_typos_by_the_webhook():
    from webhook.engine.settings import Resolved

    pod = {PREFIX + "log-keep-until": "2027-01-02T03:04:05Z", PREFIX + "log-retention": "1d"}
    ignored = {i.annotation: i.unknown for i in Resolved(load(), {}, pod).ignored}
    assert ignored == {PREFIX + "log-retention": False}  # a namespace key: "not overridable", not "unknown"
