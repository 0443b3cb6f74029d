"""toolbox.imagePullSecrets: the pull secrets of the toolbox image (a registry that needs a login)
are added to every pod that gets podmedic's init containers, after the pod's own and never twice,
recorded in the marker (version 3) so that uninject removes exactly them. The default (none)
changes no patch: the golden files hold that."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests import pods
from tests.pods import apply_checked, container
from webhook import engine
from webhook.cli import config as configfile
from webhook.engine import marker, uninject
from webhook.engine.config import ConfigError, GlobalConfig, from_mapping
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

KEY = "podmedic.io/status"
ALL_ON = {"podmedic.io/inject": "enabled", "podmedic.io/supervisor": "enabled"}


def config(secrets: Any) -> GlobalConfig:
    raw = configfile._embedded()
    return from_mapping({**raw, "toolbox": {**raw["toolbox"], "imagePullSecrets": secrets}})


CONFIG = config(["regcred", "mirror.example"])


def inject(pod: dict[str, Any], annotations: dict[str, str] | None = None,
           cfg: GlobalConfig = CONFIG) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pod as the API server would store it (schema and verification checked), and the patch;
    injecting the result again must add nothing."""
    lookup = StaticSource([Namespace("demo", annotations or ALL_ON, {})]).get("demo")
    ops = engine.inject(copy.deepcopy(pod), lookup, cfg).ops
    mutated = apply_checked(pod, ops)
    assert engine.inject(copy.deepcopy(mutated), lookup, cfg).ops == []
    return mutated, ops


def _pod(secrets: Any = ...) -> dict[str, Any]:
    pod = pods.pod(container(command=["/app"], ports=[{"containerPort": 80}]))
    if secrets is not ...:
        pod["spec"]["imagePullSecrets"] = secrets
    return pod


def _status(pod: dict[str, Any]) -> marker.Marker:
    return marker.parse(pod["metadata"]["annotations"][KEY])


@pytest.mark.parametrize("before,added", [
    (..., ["regcred", "mirror.example"]),
    (None, ["regcred", "mirror.example"]),
    ([], ["regcred", "mirror.example"]),
    ([{"name": "sa-secret"}], ["regcred", "mirror.example"]),
    ([{"name": "mirror.example"}], ["regcred"]),
    ([{"name": "sa-secret"}, {"name": "regcred"}], ["mirror.example"]),
], ids=["absent", "null", "empty", "the-service-accounts", "one-of-ours", "ours-and-another"])
def test_ours_follow_the_pods_own_none_twice_and_uninject_restores_the_pod(before, added):
    original = _pod(before)
    mutated, ops = inject(original)
    own = [ref["name"] for ref in original["spec"].get("imagePullSecrets") or []]
    assert [ref["name"] for ref in mutated["spec"]["imagePullSecrets"]] == own + added
    assert all(op["op"] == "add" for op in ops if op["path"].startswith("/spec/imagePullSecrets"))
    status = _status(mutated)
    assert status["version"] == 3 and status["pod"]["imagePullSecrets"] == added
    back = copy.deepcopy(mutated)
    assert uninject.template(back, CONFIG)
    assert back == original


def test_a_pod_that_lists_all_of_ours_gets_no_operation_and_a_version_2_marker():
    listed = [{"name": "mirror.example"}, {"name": "regcred"}]
    mutated, ops = inject(_pod(listed))
    assert mutated["spec"]["imagePullSecrets"] == listed
    assert not any("imagePullSecrets" in op["path"] for op in ops)
    status = _status(mutated)
    assert status["version"] == 2 and "imagePullSecrets" not in status["pod"]


def test_only_a_pod_that_gets_an_init_container_gets_them():
    probes_only = {"podmedic.io/inject": "enabled", "podmedic.io/logs": "disabled",
                   "podmedic.io/forensics": "disabled"}
    mutated, _ = inject(_pod(), probes_only)
    assert "initContainers" not in mutated["spec"] and "imagePullSecrets" not in mutated["spec"]
    logs_only = {"podmedic.io/inject": "enabled", "podmedic.io/forensics": "disabled"}
    mutated, _ = inject(_pod(), logs_only)  # the log directory's init container runs the toolbox image too
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == ["podmedic-logdir"]
    assert [ref["name"] for ref in mutated["spec"]["imagePullSecrets"]] == ["regcred", "mirror.example"]


def test_the_default_adds_none():
    default = configfile.load()
    assert default.toolbox.image_pull_secrets == ()
    mutated, _ = inject(_pod(), cfg=default)
    assert "imagePullSecrets" not in mutated["spec"] and _status(mutated)["version"] == 2


def test_a_manifests_list_that_is_not_one_is_left_alone():
    pod = _pod("regcred")
    ops = engine.inject(copy.deepcopy(pod), StaticSource([Namespace("demo", ALL_ON, {})]).get("demo"), CONFIG).ops
    assert not any("imagePullSecrets" in op["path"] for op in ops)
    assert "imagePullSecrets" not in json.loads(ops[-1]["value"])["pod"]


@pytest.mark.parametrize("secrets,message", [
    ("regcred", "toolbox.imagePullSecrets: must be a list of Secret names (got 'regcred')"),
    ({"name": "regcred"}, "toolbox.imagePullSecrets: must be a list of Secret names"),
    ([{"name": "regcred"}], "toolbox.imagePullSecrets[0]: must be a Secret name (a DNS-1123 subdomain"),
    (["regcred", "Reg_Cred"], "toolbox.imagePullSecrets[1]: must be a Secret name (a DNS-1123 subdomain: "
                              "lowercase letters, digits, '-' and '.', at most 253 characters), got 'Reg_Cred'"),
    ([""], "toolbox.imagePullSecrets[0]: must be a Secret name"),
    (["-regcred"], "toolbox.imagePullSecrets[0]: must be a Secret name"),
    (["a" * 254], "toolbox.imagePullSecrets[0]: must be a Secret name"),
    ([7], "toolbox.imagePullSecrets[0]: must be a Secret name"),
    (["regcred", "regcred"], "toolbox.imagePullSecrets[1]: 'regcred' is listed twice"),
])
def test_a_bad_list_stops_the_load_naming_the_key(secrets, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config(secrets)


def test_the_admins_file_sets_them(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("toolbox:\n  imagePullSecrets: [regcred, mirror.example]\n")
    assert configfile.load(path).toolbox.image_pull_secrets == ("regcred", "mirror.example")
    assert config(None).toolbox.image_pull_secrets == ()  # `imagePullSecrets:` left empty
    assert config(["a" * 253]).toolbox.image_pull_secrets == ("a" * 253,)


@pytest.mark.parametrize("listed", [[{"name": ["regcred"]}], [{"name": {"x": 1}}, {"name": "own"}], [{"name": 7}]],
                         ids=["list", "map", "number"])
def test_a_malformed_pull_secret_name_breaks_nothing(listed):
    """A name that is no string (the API server refuses the pod after admission) names none of
    ours: ours are added, and the review does not fail (a list raised TypeError: unhashable, the
    whole pod's mutator-error)."""
    lookup = StaticSource([Namespace("demo", ALL_ON, {})]).get("demo")
    outcome = engine.inject(_pod(listed), lookup, CONFIG)
    assert "mutator-error" not in {d.reason.value for d in outcome.report.decisions}
    added = [op["value"] for op in outcome.ops if op["path"].startswith("/spec/imagePullSecrets/")]
    assert added == [{"name": "regcred"}, {"name": "mirror.example"}]
