"""The per-template memo of plans (webhook/memo.py): a hit gives exactly the answer a fresh plan
gives, anything the engine reads that changes is a miss, failures are never replayed, a template
is only kept from its second sighting on, and the memory stays bounded. In-process against the pure core, then once over HTTPS on the real server."""

from __future__ import annotations

import copy
import json
from types import MappingProxyType

import pytest

from tests import pods
from tests.pods import apply_checked, container, patch_of
from webhook.admission.decode import decode
from webhook.admission.handle import Answer, handle
from webhook.admission.memo import PlanMemo, template_key
from webhook.cli.config import load
from webhook.engine.features import probes
from webhook.engine.namespace import Namespace
from webhook.kube.namespaces import StaticSource

CONFIG = load(None)


def source(**annotations: str) -> StaticSource:
    merged = {"podmedic.io/inject": "enabled", **annotations}
    return StaticSource([Namespace("demo", MappingProxyType(merged), MappingProxyType({}))])


DEMO = source()


def answer(memo: PlanMemo | None, pod: dict, namespaces: StaticSource = DEMO) -> Answer:
    body = json.dumps(pods.review(copy.deepcopy(pod))).encode()
    return handle(body, "application/json", namespaces.get, CONFIG, plans=memo)


def same_answer(a: Answer, b: Answer) -> bool:
    """Everything but the review's uid."""
    ra, rb = dict(a.body["response"]), dict(b.body["response"])
    del ra["uid"], rb["uid"]
    return ra == rb and a.audit["decisions"] == b.audit["decisions"] and a.audit["patch_ops"] == b.audit["patch_ops"]


def _decoded(pod: dict) -> dict:
    """The pod as the webhook's decoder hands it on."""
    return decode(json.dumps(pods.review(pod)).encode(), "application/json", 1 << 24).request["object"]


def seen_twice(memo: PlanMemo, pod: dict, namespaces: StaticSource = DEMO) -> None:
    """The doorkeeper admits a template on its second sighting: after this, it is in the memo."""
    for _ in range(2):
        assert answer(memo, pod, namespaces).audit["cached"] is False


def test_a_template_seen_once_is_not_kept():
    """Every pod new (StatefulSet pods, Jobs): nothing is stored only to be evicted unused."""
    memo: PlanMemo = PlanMemo(1 << 20)
    assert answer(memo, pods.controller_pod()).audit["outcome"] == "patched"
    assert (memo.misses, len(memo), memo.size_bytes) == (1, 0, 0)


def test_a_controllers_third_pod_is_answered_from_the_memo_exactly_as_planned():
    """The second sighting stores the plan, the third is a hit."""
    memo: PlanMemo = PlanMemo(1 << 20)
    template = pods.controller_pod()
    first, second, third = (answer(memo, template) for _ in range(3))
    assert [a.audit["cached"] for a in (first, second, third)] == [False, False, True]
    assert same_answer(first, third) and same_answer(third, answer(None, template))
    apply_checked(template, patch_of(third.body))
    assert (memo.hits, memo.misses, len(memo)) == (1, 2, 1)


def distinct_templates(count: int) -> list[dict]:
    templates = []
    for i in range(count):
        p = pods.controller_pod()
        p["metadata"]["labels"]["replica-set"] = str(i)
        templates.append(p)
    return templates


def test_the_templates_seen_once_are_bounded_oldest_forgotten_first():
    memo: PlanMemo = PlanMemo(1 << 20, seen_capacity=3)
    templates = distinct_templates(4)
    for p in templates:
        answer(memo, p)
    answer(memo, templates[0])  # forgotten: a first sighting again, not kept
    assert len(memo) == 0
    for p in templates[2:]:  # still remembered: their second sighting keeps them
        answer(memo, p)
    assert len(memo) == 2
    assert [answer(memo, p).audit["cached"] for p in templates[2:]] == [True, True]


def test_managed_fields_are_not_part_of_the_template():
    """The API server stamps managedFields with the request's second: replicas created a second
    apart are still one template."""
    memo: PlanMemo = PlanMemo(1 << 20)
    template = pods.controller_pod()
    later = copy.deepcopy(template)
    later["metadata"]["managedFields"][0]["time"] = "2026-11-25T00:00:01Z"
    seen_twice(memo, template)
    assert answer(memo, later).audit["cached"] is True
    assert template_key(_decoded(template)) == template_key(_decoded(later))


def with_token_volume(pod: dict, name: str) -> dict:
    """The pod with its ServiceAccount token volume (and mount) renamed, as the ServiceAccount
    admission plugin names it randomly for every pod."""
    renamed = json.loads(json.dumps(pod).replace('"kube-api-access-abcde"', json.dumps(name)))
    assert renamed != pod
    return renamed


def test_the_random_token_volume_name_is_not_part_of_the_template():
    memo: PlanMemo = PlanMemo(1 << 20)
    template = pods.controller_pod()
    other = with_token_volume(template, "kube-api-access-x7k2q")
    seen_twice(memo, template)
    third = answer(memo, other)
    assert third.audit["cached"] is True and same_answer(third, answer(None, other))
    apply_checked(other, patch_of(third.body))


def test_only_a_single_token_volume_is_masked():
    """Two volumes named like the plugin's: nothing is masked, the key is the pod as sent."""
    template = pods.controller_pod()
    volume = copy.deepcopy(template["spec"]["volumes"][0])
    template["spec"]["volumes"].append({**volume, "name": "kube-api-access-zzzzz"})
    assert template_key(template) != template_key(with_token_volume(template, "kube-api-access-x7k2q"))


@pytest.mark.parametrize("change", [
    lambda p: p["spec"]["containers"][0].update(readinessProbe={"tcpSocket": {"port": 8080}}),
    lambda p: p["spec"]["containers"][0]["ports"][0].update(containerPort=9090),
    lambda p: p["metadata"].update(annotations={"podmedic.io/readiness-path": "/health"}),
    lambda p: p["metadata"]["labels"].update(version="2"),
    lambda p: p["spec"].update(terminationGracePeriodSeconds=3),
    lambda p: p["spec"]["containers"].append(container("sidecar", ports=[{"containerPort": 9000}])),
], ids=["own-probe", "port", "pod-annotation", "label", "grace-period", "container"])
def test_any_other_change_to_the_pod_is_a_new_plan(change):
    memo: PlanMemo = PlanMemo(1 << 20)
    template = pods.controller_pod()
    changed = copy.deepcopy(template)
    change(changed)
    seen_twice(memo, template)
    fresh = answer(memo, changed)
    assert fresh.audit["cached"] is False
    assert same_answer(fresh, answer(None, changed))
    apply_checked(changed, patch_of(fresh.body))


def test_a_changed_namespace_is_a_new_plan():
    """The sources replace a Namespace object on every change; an entry only serves the object it
    was planned with."""
    memo: PlanMemo = PlanMemo(1 << 20)
    template = pods.controller_pod()
    before = source()
    seen_twice(memo, template, before)
    planned = answer(memo, template, before)
    assert planned.audit["cached"] is True
    after = answer(memo, template, source(**{"podmedic.io/readiness-path": "/ready"}))
    assert after.audit["cached"] is False
    readiness = [op for op in patch_of(after.body) if op["path"].endswith("/readinessProbe")]
    assert readiness[0]["value"]["httpGet"]["path"] == "/ready"
    assert not same_answer(planned, after)


def test_namespaces_not_opted_in_never_reach_the_memo():
    """Their pods reach the webhook too (a namespaceSelector sees labels, not annotations):
    no key is even encoded for them."""
    memo: PlanMemo = PlanMemo(1 << 20)
    for off in (source(**{"podmedic.io/inject": "disabled"}), source(**{"podmedic.io/inject": ""})):
        assert answer(memo, pods.controller_pod(), off).audit["cached"] is False
    assert (memo.hits, memo.misses, len(memo)) == (0, 0, 0)


def test_pods_that_get_no_patch_are_not_kept():
    """Cheap to plan again; only what saves work takes memory."""
    memo: PlanMemo = PlanMemo(1 << 20)
    template = pods.controller_pod()
    template["metadata"]["annotations"] = {f"podmedic.io/{f}": "disabled" for f in ("probes", "logs", "forensics")}
    for _ in range(3):
        unchanged = answer(memo, template)
        assert unchanged.audit["cached"] is False and unchanged.audit["outcome"] == "unchanged"
    assert (memo.misses, len(memo)) == (3, 0)


def test_a_failing_mutator_is_planned_and_logged_every_time(monkeypatch, caplog):
    memo: PlanMemo = PlanMemo(1 << 20)

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(probes, "build", broken)
    template = pods.controller_pod()
    for _ in range(3):
        a = answer(memo, template)
        assert a.audit["cached"] is False
        assert "mutator-error" in [d["reason"] for d in a.audit["decisions"]]
    assert len(memo) == 0
    assert sum("mutator probes failed" in r.getMessage() for r in caplog.records) == 3


def test_memory_is_bounded_by_bytes_least_recently_used_out_first():
    templates = distinct_templates(6)
    probe: PlanMemo = PlanMemo(1 << 20)
    seen_twice(probe, templates[0])
    one = probe.size_bytes
    memo: PlanMemo = PlanMemo(3 * one + one // 2)  # room for three
    for p in templates:
        seen_twice(memo, p)
    assert len(memo) == 3 and memo.size_bytes <= memo.max_bytes
    assert answer(memo, templates[0]).audit["cached"] is False  # the oldest went first
    assert answer(memo, templates[5]).audit["cached"] is True


def test_zero_bytes_turns_the_memo_off():
    memo: PlanMemo = PlanMemo(0)
    template = pods.controller_pod()
    assert [answer(memo, template).audit["cached"] for _ in range(3)] == [False, False, False]
    assert len(memo) == 0


def test_the_server_answers_a_repeated_template_from_the_memo(server):
    """Over one keep-alive connection (one worker, whose memo it is): same answer, marked in the
    audit line and counted in /metrics."""
    template = pods.controller_pod()
    answers = []
    for _ in range(4):
        body = pods.review(copy.deepcopy(template))
        r = server.post(body)
        assert r.status_code == 200, r.text
        answers.append((body["request"]["uid"], r.json()["response"]))
    lines = [server.audit_for(uid) for uid, _ in answers]
    assert [line["cached"] for line in lines] == [False, False, True, True]
    first, *rest = [{k: v for k, v in resp.items() if k != "uid"} for _, resp in answers]
    assert all(resp == first for resp in rest)
    apply_checked(template, patch_of({"response": answers[3][1]}))
    metrics = server.get("/metrics").text
    assert 'podmedic_plan_memo_total{result="hit"}' in metrics
