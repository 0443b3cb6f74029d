"""Whole janitor runs on real directory trees, with the pod LIST faked: what a failed list, the
dry-run, retention, pins and quarantine do to the directories, and what the audit says."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import podmedic
from tests.janitor.hostile import DEAD, NEIGHBOUR, OTHER_UID, UID, pod_dir
from webhook.cli.config import load
from webhook.engine.config import GlobalConfig
from webhook.janitor import tree
from webhook.janitor.metrics import render
from webhook.janitor.plan import DELETING, Record
from webhook.janitor.run import UNLISTED, Sources, Tally, run

DAY = 86400.0
LATER = 30 * DAY  # the clock of a run a month after the directories were written


def config_for(root: Path, tmp_path: Path) -> tuple[GlobalConfig, Path]:
    path = tmp_path / "config.yaml"
    path.write_text(f"logs: {{hostRoot: {root}, janitor: {{dryRun: true}}}}\n")
    return load(path), path


def pod(uid: str, namespace: str = "other", name: str = "db-0", annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"uid": uid, "namespace": namespace, "name": name, "annotations": annotations or {}, "labels": labels or {}}


def sweep(cfg: GlobalConfig, pods: list[dict[str, Any]] | Exception, *, dry_run: bool = False,
          after: float = LATER, namespaces: dict[str, dict[str, str]] | None = None) -> tuple[Tally, list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []

    def listing() -> list[dict[str, Any]]:
        if isinstance(pods, Exception):
            raise pods
        return pods

    listed = {"team": {}, "other": {}} if namespaces is None else namespaces
    sources = Sources(listing, lambda: [{"name": n, "annotations": a} for n, a in listed.items()])
    tally = run(cfg, sources, lines.append, dry_run=dry_run, clock=lambda: time.time() + after)
    return tally, lines


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.mark.parametrize("failure", [ConnectionError("refused"), RuntimeError("LIST pods: pages from different snapshots")])
def test_a_failed_or_partial_list_deletes_nothing_and_records_nothing(root, tmp_path, failure):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    tally, lines = sweep(cfg, failure)
    assert (root / DEAD / "app" / "app.0.log").exists() and not (root / DEAD / tree.RECORD).exists()
    assert [line["event"] for line in lines] == ["janitor-list-failed"]
    assert tally.errors == {"list-failed": 1} and not tally.directories


def test_dry_run_reports_and_deletes_nothing(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    tally, lines = sweep(cfg, [], dry_run=True)
    assert (root / DEAD).is_dir()
    (line,) = lines
    assert (line["action"], line["reason"], line["dryRun"], line["directory"]) == ("delete", "expired", True, DEAD)
    assert tally.directories == {("team", "would-delete"): 1} and tally.bytes[("team", "would-delete")] == 21


def test_a_dead_pods_expired_directory_goes_and_a_live_ones_stays(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    pod_dir(root, NEIGHBOUR)
    (root / "lost+found").mkdir()
    tally, lines = sweep(cfg, [pod(OTHER_UID)])
    assert sorted(os.listdir(root)) == ["lost+found", NEIGHBOUR]
    by_dir = {(line["event"], line["directory"]): line for line in lines}
    assert by_dir[("janitor", NEIGHBOUR)]["reason"] == "pod-exists"
    assert by_dir[("janitor-deletion", DEAD)]["outcome"] == "deleted"
    assert tally.directories == {("team", "deleted"): 1, ("other", "kept"): 1}
    text = render(tally, 1.5, 1e9).decode()
    assert 'podmedic_janitor_directories{namespace="team",outcome="deleted"} 1.0' in text
    assert 'podmedic_janitor_bytes{namespace="team",outcome="deleted"} 21.0' in text


def test_a_namespace_not_in_the_list_is_one_metrics_label(root, tmp_path):
    """Directory names are the tenants' to choose: they must not mint metric labels."""
    cfg, _ = config_for(root, tmp_path)
    for i in range(3):
        pod_dir(root, f"made-up-{i}_web-1_{UID}")
    pod_dir(root)
    tally, _ = sweep(cfg, [], dry_run=True, namespaces={"team": {}})
    assert tally.directories == {("team", "would-delete"): 1, (UNLISTED, "would-delete"): 3}


def test_a_directory_within_its_namespaces_retention_stays(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    tally, _ = sweep(cfg, [], after=6 * DAY)
    assert (root / DEAD).is_dir() and tally.directories == {("team", "kept"): 1}
    tally, lines = sweep(cfg, [], after=3 * DAY, namespaces={"team": {"podmedic.io/log-retention": "2d"}})
    assert not (root / DEAD).exists(), lines


def test_a_pin_recorded_while_the_pod_lived_is_honoured_after_it_is_gone(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    pin = time.time() + 60 * DAY
    annotations = {"podmedic.io/log-keep-until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pin))}
    _, lines = sweep(cfg, [pod(UID, "team", "web-1", annotations)])
    assert lines[0]["action"] == "record"
    r = tree.open_root(str(root))
    try:
        assert tree.read_record(r, DEAD) == Record(float(int(pin)), False)
    finally:
        r.close()
    _, lines = sweep(cfg, [])  # a month later, the pod gone: kept by its pin
    assert (root / DEAD).is_dir() and lines[0]["reason"] == "pinned"
    sweep(cfg, [], after=61 * DAY)
    assert not (root / DEAD).exists()


def test_a_quarantined_pods_directory_is_kept_the_extra_retention(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    sweep(cfg, [pod(UID, "team", "web-1", labels={"podmedic.io/quarantined": "true"})])
    _, lines = sweep(cfg, [], after=10 * DAY)  # past 7d retention, within 7d + 7d
    assert (root / DEAD).is_dir() and lines[0]["reason"] == "quarantine-retention"
    sweep(cfg, [], after=15 * DAY)
    assert not (root / DEAD).exists()


def test_the_pvc_backends_claim_directories_are_swept_as_extra_roots(root, tmp_path):
    claim = tmp_path / "podmedic-logs" / "team"
    claim.mkdir(parents=True)
    path = tmp_path / "config.yaml"
    path.write_text(f"logs: {{hostRoot: {root}, janitor: {{dryRun: true, roots: [{claim}]}}}}\n")
    pod_dir(claim)
    pod_dir(root, NEIGHBOUR)
    sweep(load(path), [pod(OTHER_UID)])
    assert os.listdir(claim) == [] and os.listdir(root) == [NEIGHBOUR]


def test_a_deletion_cut_short_is_resumed_by_the_next_run(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    base = pod_dir(root)
    os.rename(base, root / (DELETING + DEAD))  # as a run out of time leaves it
    _, lines = sweep(cfg, [], after=0)
    assert os.listdir(root) == [] and lines[0]["reason"] == "deletion-resumed"


def test_a_tree_that_vanishes_after_its_rename_is_a_change_not_a_crash(root, tmp_path, monkeypatch):
    """Its owner removes the renamed tree between the rename and the walk: there is no name to
    restore, and the other directories are still swept."""
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    pod_dir(root, NEIGHBOUR)
    begin = tree.begin_deletion

    def racing(r: tree.Root, d: Any) -> str:
        name = begin(r, d)
        if d.uid == UID:
            shutil.rmtree(root / name)
        return name

    monkeypatch.setattr(tree, "begin_deletion", racing)
    tally, lines = sweep(cfg, [])
    outcomes = {line["uid"]: line["outcome"] for line in lines if line["event"] == "janitor-deletion"}
    assert outcomes == {UID: "changed", OTHER_UID: "deleted"} and os.listdir(root) == []


LONG = "team_" + ".".join(["a" * 63, "b" * 63, "c" * 63]) + f"-xyz_{UID}"  # 237 bytes


def test_a_directory_whose_deleting_name_would_be_too_long_is_deleted(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root, LONG)
    tally, lines = sweep(cfg, [])
    assert os.listdir(root) == [] and not tally.errors and lines[-1]["outcome"] == "deleted"


def test_a_deletion_cut_short_under_the_short_deleting_name_is_resumed(root, tmp_path):
    cfg, _ = config_for(root, tmp_path)
    os.rename(pod_dir(root, LONG), root / f"{DELETING}team_{UID}")
    _, lines = sweep(cfg, [], after=0)
    assert os.listdir(root) == [] and (lines[0]["reason"], lines[0]["namespace"]) == ("deletion-resumed", "team")


def test_a_live_pods_entry_that_is_a_symlink_gets_no_record_and_no_error(root, tmp_path):
    """A symlink named like a live pod's directory: writing the record into it fails (and must
    not follow it); that failure made every run fail."""
    cfg, _ = config_for(root, tmp_path)
    decoy = tmp_path / "etc"
    decoy.mkdir()
    (root / DEAD).symlink_to(decoy)
    for _ in range(2):
        tally, lines = sweep(cfg, [pod(UID, "team", "web-1")])
        assert not tally.errors and [(line["action"], line["reason"]) for line in lines] == [("keep", "unsafe-tree")]
    assert os.listdir(decoy) == [] and (root / DEAD).is_symlink()


@pytest.mark.parametrize("where", [tree.RECORD, tree.RECORD + ".tmp"])
def test_a_tenants_directory_where_the_record_goes_does_not_fail_every_run(root, tmp_path, where):
    """With the pvc backend the tenant can write its pod directory: a directory named like the
    record (or its temporary file) cannot be replaced by it. That is the tenant's record, not the
    janitor's failure: it is left, said, and the run does not fail (it failed every run)."""
    cfg, path = config_for(root, tmp_path)
    live = pod_dir(root)
    (live / where).mkdir()
    (live / where / "x").write_text("mine")
    for _ in range(2):
        tally, lines = sweep(cfg, [pod(UID, "team", "web-1")])
        assert set(tally.errors) == {"left"}, tally.errors
        assert lines[1]["event"] == "janitor-record-failed" and "directory" in lines[1]["error"]
    assert (live / where / "x").read_text() == "mine"


def test_a_root_that_is_a_symlink_is_skipped_and_said(root, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(root)
    cfg, _ = config_for(link, tmp_path)
    pod_dir(root)
    tally, lines = sweep(cfg, [])
    assert (root / DEAD).is_dir() and tally.errors["root-unusable"] == 1
    assert lines[0]["event"] == "janitor-root-skipped"


def test_a_root_that_cannot_be_listed_is_skipped_and_said(root, tmp_path, monkeypatch):
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)

    def unreadable(_: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tree, "candidates", unreadable)
    tally, lines = sweep(cfg, [])
    assert (root / DEAD).is_dir() and tally.errors == {"root-unusable": 1}
    assert lines == [{"event": "janitor-root-skipped", "root": str(root), "error": "Permission denied"}]


def test_the_cli_without_a_reachable_api_deletes_nothing_and_fails(root, tmp_path):
    _, path = config_for(root, tmp_path)
    pod_dir(root)
    done = podmedic("logs", "janitor", "--config", str(path), "--delete", "--metrics-file", str(tmp_path / "m.prom"),
                    env={**os.environ, "KUBECONFIG": str(tmp_path / "missing")})
    assert done.returncode == 1, done.stdout + done.stderr
    events = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert events == ["janitor-list-failed", "janitor-summary"]
    assert (root / DEAD / "app" / "app.0.log").exists()
    assert 'podmedic_janitor_errors{kind="list-failed"} 1.0' in (tmp_path / "m.prom").read_text()


def test_the_clis_errors_go_to_stderr_leaving_stdout_json_lines(root, tmp_path):
    """Standard output is the run's JSON lines (docs/logs.md): a metrics file that could not be
    written, or a configuration that could not be read, was a plain-text line among them (a log
    pipeline parsing JSON lines choked on it, stderr empty), and the metrics' .tmp stayed behind."""
    _, path = config_for(root, tmp_path)
    metrics = tmp_path / "m.prom"
    metrics.mkdir()  # not a file: the rename over it fails
    done = podmedic("logs", "janitor", "--config", str(path), "--metrics-file", str(metrics),
                    env={**os.environ, "KUBECONFIG": str(tmp_path / "missing")})
    assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == ["janitor-list-failed", "janitor-summary"]
    assert done.stderr.startswith(f"podmedic logs janitor: cannot write metrics to {metrics}: ")
    assert done.stderr.count("\n") == 1 and not (tmp_path / "m.prom.tmp").exists()
    done = podmedic("logs", "janitor", "--config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("podmedic logs janitor: cannot read config ")


def test_a_backdated_mtime_does_not_age_a_fresh_directory(root, tmp_path):
    """A tenant can `touch -d` every entry of its tree into the past (mtime); the ctime that
    setting bumps is what the janitor measures, so the directory stays within retention."""
    cfg, _ = config_for(root, tmp_path)
    base = pod_dir(root)
    old = time.time() - 60 * DAY
    for path in [*base.rglob("*"), base]:
        os.utime(path, (old, old), follow_symlinks=False)
    tally, lines = sweep(cfg, [], after=3 * DAY)
    assert (root / DEAD / "app" / "app.0.log").exists()
    assert [(line["action"], line["reason"]) for line in lines] == [("keep", "within-retention")]
    assert tally.directories == {("team", "kept"): 1}


def test_a_failed_namespaces_list_deletes_nothing(root, tmp_path):
    """The namespaces carry the retentions: without their complete list nothing is known expired."""
    cfg, _ = config_for(root, tmp_path)
    pod_dir(root)
    lines: list[dict[str, Any]] = []

    def namespaces() -> list[dict[str, Any]]:
        raise ConnectionError("LIST namespaces: refused")

    tally = run(cfg, Sources(lambda: [], namespaces), lines.append, dry_run=False, clock=lambda: time.time() + LATER)
    assert (root / DEAD / "app" / "app.0.log").exists() and not (root / DEAD / tree.RECORD).exists()
    assert lines == [{"event": "janitor-list-failed", "error": "LIST namespaces: refused", "deleted": 0}]
    assert tally.errors == {"list-failed": 1} and not tally.directories
