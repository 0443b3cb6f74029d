"""The explicit patch builder and the hot path's applier, checked against jsonpatch (RFC 6902)."""

from __future__ import annotations

import copy
import json

import jsonpatch
import pytest

from webhook.admission import verify
from webhook.engine.patch import PatchBuilder, apply_in_place, pointer


def built() -> tuple[dict, list[dict]]:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "env": None}], "volumes": []}}
    b = PatchBuilder(pod)
    b.append(("spec", "containers", 0, "env"), {"name": "A"})  # null parent: created as a list
    b.append(("spec", "containers", 0, "env"), {"name": "B"})
    b.set(("spec", "containers", 0, "lifecycle", "preStop"), {"exec": {"command": ["x"]}})
    b.set(("metadata", "annotations", "podmedic.io/status"), "{}")
    b.prepend(("spec", "initContainers"), {"name": "i"})
    b.prepend(("spec", "initContainers"), {"name": "j"})
    b.append(("spec", "volumes"), {"name": "v"})
    b.set(("metadata", "name"), "q")
    return pod, b.ops


def test_ops_apply_with_rfc6902_semantics_and_parents_first():
    pod, ops = built()
    result = jsonpatch.apply_patch(copy.deepcopy(pod), ops)
    assert result["spec"]["containers"][0]["env"] == [{"name": "A"}, {"name": "B"}]
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["j", "i"]
    assert result["metadata"] == {"name": "q", "annotations": {"podmedic.io/status": "{}"}}
    assert ops[-1]["op"] == "replace"


def test_fast_applier_matches_jsonpatch():
    pod, ops = built()
    expected = jsonpatch.apply_patch(copy.deepcopy(pod), ops)
    assert apply_in_place(copy.deepcopy(pod), json.loads(json.dumps(ops))) == expected


def test_verify_applies_decoded_operations_so_the_ops_stay_as_built():
    """apply_in_place shares values between pod and ops: applied to the builder's own ops, the
    `/-` append lands in the list the first `add` carries too (the API server would then add B
    twice). verify.apply decodes the encoded patch first, so what is sent stays as built."""
    pod, ops = built()
    before = json.dumps(ops)
    patched = verify.apply(copy.deepcopy(pod), before)
    assert json.dumps(ops) == before
    assert patched == jsonpatch.apply_patch(copy.deepcopy(pod), ops)
    apply_in_place(copy.deepcopy(pod), ops)
    assert json.dumps(ops) != before  # the hazard the decoding avoids


def test_rollback_forgets_ops_and_created_parents():
    b = PatchBuilder({"spec": {}})
    mark = b.mark()
    b.append(("spec", "volumes"), {"name": "v"})
    b.rollback(mark)
    assert b.ops == [] and b.created == []
    b.append(("spec", "volumes"), {"name": "w"})
    assert b.ops == [{"op": "add", "path": "/spec/volumes", "value": [{"name": "w"}]}]


def test_a_containers_spec_as_parent_gives_what_the_walk_from_the_pod_gives():
    """The features pass the container's own spec (or lifecycle) as `parent`: same ops, created and
    replaced."""
    def build(hint: bool) -> PatchBuilder:
        container = {"name": "a", "env": None, "command": [], "volumeMounts": [{"name": "m", "mountPath": "/m"}],
                     "livenessProbe": {"exec": {"command": ["x"]}}}
        b = PatchBuilder({"spec": {"containers": [container]}})
        parent = container if hint else None
        path = ("spec", "containers", 0)
        for field in ("env", "volumeMounts", "ports", "env", "ports"):
            b.append(path + (field,), {"name": field}, parent)
        for field in ("command", "livenessProbe", "readinessProbe"):
            b.set(path + (field,), [field], parent)
        b.ensure_map(path + ("lifecycle",), parent)
        b.set(path + ("lifecycle", "preStop"), ["stop"], {} if hint else None)  # no lifecycle: an empty parent
        return b

    walked, hinted = build(hint=False), build(hint=True)
    assert hinted.ops == walked.ops and hinted.created == walked.created and hinted.replaced == walked.replaced
    assert [op["op"] for op in hinted.ops] == ["add"] * 5 + ["replace", "replace", "add", "add", "add"]
    assert hinted.replaced == [(("spec", "containers", 0, "env"), None), (("spec", "containers", 0, "command"), [])]


def test_pointer_escapes():
    assert pointer(("metadata", "annotations", "a/b~c")) == "/metadata/annotations/a~1b~0c"


@pytest.mark.parametrize("op", [{"op": "replace", "path": "/missing", "value": 1},
                                {"op": "replace", "path": "/l/0", "value": 1},
                                {"op": "add", "path": "/a/b/c", "value": 1}])
def test_fast_applier_rejects_what_does_not_apply(op):
    with pytest.raises((KeyError, ValueError, TypeError, IndexError)):
        apply_in_place({"l": [1]}, [op])


@pytest.mark.parametrize("doc, path, error", [
    ({"s": "abc"}, "/s/0/x", "string indices must be integers, not 'str'"),  # through a string by a digit
    ({"s": "abc"}, "/s/0/0/x", "string indices must be integers, not 'str'"),
    ({"l": [{}]}, "/l/x/y", "invalid literal for int() with base 10: 'x'"),
    ({"l": [{}]}, "/l/5/y", "list index out of range"),
    ({"s": "abc"}, "/s/x", "'str' object does not support item assignment"),  # into a string by its key
])
def test_fast_applier_fails_as_the_walk_by_type(doc, path, error):
    """A parent walked by int keys for digit tokens fails with the message of a walk that asks
    each node whether it is a list (verify's PatchRejected message carries it)."""
    with pytest.raises((KeyError, ValueError, TypeError, IndexError)) as raised:
        apply_in_place(doc, [{"op": "add", "path": path, "value": 1}])
    assert str(raised.value) == error


def test_fast_applier_reads_digit_keys_of_maps():
    """A map's key of digits is a string key, not a list index."""
    doc = {"m": {"0": {}}}
    assert apply_in_place(doc, [{"op": "add", "path": "/m/0/x", "value": 1}]) == {"m": {"0": {"x": 1}}}
