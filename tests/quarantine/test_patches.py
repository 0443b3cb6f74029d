"""The quarantine and release patches (webhook/quarantine/patches.py), applied with jsonpatch to
the pod they were made for: what the pod looks like after each, that release after quarantine
gives the labels back exactly, and that the guards refuse any other pod."""

from __future__ import annotations

import copy
import json

import jsonpatch
import pytest

from tests.quarantine.objects import NOW, PREFIX, agreed, deployment, iso, pod, replicaset
from webhook.quarantine.decide import SAFE_TO_EVICT, Marks, NamespaceView, decide
from webhook.quarantine.patches import quarantine_ops, release_ops
from webhook.quarantine.reasons import Action
from webhook.cli.config import load

CONFIG = load()
MARKS = Marks(PREFIX)
ON = {PREFIX + "quarantine": "enabled"}
DEP = deployment()
RS = replicaset(DEP)


def quarantine(target):
    (decision,) = decide(NamespaceView("ns", ON, [target], [DEP, RS]), CONFIG, NOW, agreed([target]))
    ops = quarantine_ops(decision, MARKS, NOW)
    return decision, ops, jsonpatch.apply_patch(target, ops)


def test_quarantine_removes_the_owners_labels_and_records_everything_for_release():
    original = pod("web-1", RS, labels={"app": "web", "pod-template-hash": "5d8c9", "team": "a"})
    decision, ops, after = quarantine(original)
    assert ops[:2] == [{"op": "test", "path": "/metadata/uid", "value": "uid-web-1"},
                       {"op": "replace", "path": "/metadata/resourceVersion", "value": "100"}]
    assert after["metadata"]["labels"] == {"team": "a", PREFIX + "quarantined": "true"}
    annotations = after["metadata"]["annotations"]
    assert annotations[PREFIX + "quarantine-owner"] == "Deployment/web/dep-1"
    assert annotations[PREFIX + "quarantine-reason"] == "not-ready"
    assert annotations[PREFIX + "quarantined-at"] == iso(NOW)
    assert annotations[PREFIX + "quarantine-expires"] == iso(NOW + 3600)
    assert annotations[PREFIX + "quarantine-observed"] == "containers with unready status: [app]"
    assert json.loads(annotations[PREFIX + "quarantine-saved"]) == {
        "labels": {"app": "web", "pod-template-hash": "5d8c9"}, "safeToEvict": None}
    assert annotations[SAFE_TO_EVICT] == "true"
    assert annotations[PREFIX + "status"] == "{}"  # nothing else touched


@pytest.mark.parametrize("prior_safe_to_evict", [None, "false"])
def test_release_after_quarantine_restores_labels_and_annotations_exactly(prior_safe_to_evict):
    extra = {SAFE_TO_EVICT: prior_safe_to_evict} if prior_safe_to_evict else {}
    original = pod("web-1", RS, labels={"app": "web", "pod-template-hash": "5d8c9", "team": "a"}, annotations=extra)
    _, _, after = quarantine(original)
    after["metadata"]["resourceVersion"] = "101"
    released = jsonpatch.apply_patch(after, release_ops(after, MARKS, NOW + 60))
    assert released["metadata"]["labels"] == original["metadata"]["labels"]
    assert released["metadata"]["annotations"] == {**original["metadata"]["annotations"],
                                                   PREFIX + "quarantine-released": iso(NOW + 60)}


def test_every_label_removed_and_a_bare_pod_without_labels():
    """Removing every label leaves an empty map the label is added to; a pod with no labels map
    gets a whole one. (A candidate always has annotations: podmedic's status annotation.)"""
    original = pod("web-1", RS, labels={"app": "web", "pod-template-hash": "5d8c9"})
    _, _, after = quarantine(original)
    assert after["metadata"]["labels"] == {PREFIX + "quarantined": "true"}
    bare = pod("lonely", labels={})
    bare["metadata"]["labels"] = None
    (mark,) = decide(NamespaceView("ns", ON, [bare], []), CONFIG, NOW, agreed([bare]))
    assert mark.action is Action.MARK
    marked = jsonpatch.apply_patch(bare, quarantine_ops(mark, MARKS, NOW))
    assert marked["metadata"]["labels"] == {PREFIX + "quarantined": "true"}
    assert SAFE_TO_EVICT not in marked["metadata"]["annotations"]  # evicting a bare pod loses it
    assert PREFIX + "quarantine-expires" not in marked["metadata"]["annotations"]


def test_the_guards_refuse_another_pod_of_the_same_name():
    original = pod("web-1", RS)
    _, ops, _ = quarantine(original)
    other = copy.deepcopy(original)
    other["metadata"]["uid"] = "uid-recreated"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(other, ops)


def test_release_refuses_a_pod_that_is_not_quarantined_or_lost_its_record():
    with pytest.raises(ValueError, match="is not quarantined"):
        release_ops(pod("web-1", RS), MARKS, NOW)
    _, _, after = quarantine(pod("web-1", RS))
    after["metadata"]["annotations"][PREFIX + "quarantine-saved"] = "{not json"
    with pytest.raises(ValueError, match="quarantine-saved is missing or malformed"):
        release_ops(after, MARKS, NOW)
