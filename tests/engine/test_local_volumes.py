"""The cluster-autoscaler's local-volumes annotation: podmedic lists the local volumes it adds
(the toolbox and state emptyDirs, a hostPath log root) in
`cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes`, merged with what the pod lists,
none twice, and uninject gives the pod's own value back exactly."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests import pods
from tests.engine.test_mutations import run
from tests.pods import container
from webhook.cli import config as configfile
from webhook.engine import marker, uninject
from webhook.engine.pod_level import SAFE_TO_EVICT

CONFIG = configfile.load()
OURS = "podmedic-toolbox,podmedic-state,podmedic-logs"


def _pod(value: Any = ..., **annotations: str) -> dict[str, Any]:
    notes: dict[str, Any] = dict(annotations)
    if value is not ...:
        notes[SAFE_TO_EVICT] = value
    return pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), annotations=notes)


@pytest.mark.parametrize("before,after", [
    (..., OURS),
    ("", OURS),
    ("cache", "cache," + OURS),
    ("cache,scratch", "cache,scratch," + OURS),
    ("cache,", "cache," + OURS),
    ("podmedic-state,cache", "podmedic-state,cache,podmedic-toolbox,podmedic-logs"),
], ids=["absent", "empty", "one", "two", "trailing-comma", "one-of-ours-already"])
def test_our_local_volumes_are_merged_into_the_list(before, after):
    mutated, _ = run(_pod(before))
    assert mutated["metadata"]["annotations"][SAFE_TO_EVICT] == after
    names = after.split(",")
    assert len(names) == len(set(names))
    volumes = {v["name"] for v in mutated["spec"]["volumes"]}
    assert set(OURS.split(",")) <= volumes


def test_a_pod_that_lists_all_of_ours_is_left_as_it_is():
    mutated, outcome = run(_pod("podmedic-logs,podmedic-state,podmedic-toolbox"))
    assert mutated["metadata"]["annotations"][SAFE_TO_EVICT] == "podmedic-logs,podmedic-state,podmedic-toolbox"
    assert not any(SAFE_TO_EVICT.replace("/", "~1") in op["path"] for op in outcome.ops)
    assert "annotations" not in json.loads(mutated["metadata"]["annotations"]["podmedic.io/status"])["pod"]


def test_only_the_volumes_actually_added_are_listed():
    mutated, _ = run(_pod(), {"podmedic.io/inject": "enabled", "podmedic.io/logs": "disabled",
                              "podmedic.io/forensics": "disabled"})
    assert SAFE_TO_EVICT not in mutated["metadata"].get("annotations", {})  # probes only: no volume
    mutated, _ = run(_pod(), {"podmedic.io/inject": "enabled"})  # logs + forensics, no supervisor
    assert mutated["metadata"]["annotations"][SAFE_TO_EVICT] == OURS


@pytest.mark.parametrize("pod", [
    _pod(),
    _pod(""),
    _pod("cache"),
    _pod("cache,"),
    _pod(" a , b "),
    pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]), annotations=None),
    {**_pod(), "metadata": {"name": "web", "annotations": None}},
    {**_pod(), "metadata": {"name": "web", "annotations": {}}},
], ids=["absent", "empty", "one", "trailing-comma", "spaces", "no-annotations", "annotations-null",
        "annotations-empty"])
def test_uninject_restores_the_original_exactly(pod):
    mutated, _ = run(pod)
    assert mutated["metadata"]["annotations"][SAFE_TO_EVICT] != (pod["metadata"].get("annotations") or {}).get(
        SAFE_TO_EVICT)
    back = copy.deepcopy(mutated)
    assert uninject.template(back, CONFIG)
    assert back == pod


def test_the_marker_records_the_original_and_parses():
    mutated, _ = run(_pod("cache"))
    text = mutated["metadata"]["annotations"]["podmedic.io/status"]
    parsed = marker.parse(text)
    assert parsed["version"] == 2
    assert parsed["pod"]["annotations"] == {SAFE_TO_EVICT: "cache"}
    assert marker.write(parsed) == text
    absent, _ = run(_pod())
    assert marker.parse(absent["metadata"]["annotations"]["podmedic.io/status"])["pod"]["annotations"] == {
        SAFE_TO_EVICT: None}


@pytest.mark.parametrize("record,error", [
    ({"annotations": {SAFE_TO_EVICT: 3}}, "must be a string or null, not a number"),
    ({"annotations": []}, "pod.annotations must be an object"),
])
def test_a_damaged_annotations_record_is_refused(record, error):
    data = {"containers": {}, "pod": {"volumes": [], "initContainers": [], **record}, "version": 2, "created": []}
    with pytest.raises(marker.MarkerError, match=error):
        marker.parse(json.dumps(data))


def test_a_version_1_marker_is_still_read_but_cannot_carry_annotations():
    v1 = {"containers": {}, "pod": {"volumes": ["podmedic-toolbox"], "initContainers": []}, "version": 1, "created": []}
    assert marker.parse(json.dumps(v1))["version"] == 1
    v1["pod"]["annotations"] = {SAFE_TO_EVICT: None}
    with pytest.raises(marker.MarkerError, match="unknown key"):
        marker.parse(json.dumps(v1))
