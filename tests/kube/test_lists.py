"""A LIST is used only whole: the paging checks of webhook.kube.lists, with pages made up here
(the real API server's paging is exercised by tests/janitor/test_kubeapi.py)."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.kube import lists


def page(version: str, names: list[str], token: str = "") -> dict[str, Any]:
    return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": version, **({"continue": token} if token else {})},
            "items": [{"metadata": {"name": n, "uid": f"uid-{n}"}} for n in names]}


def pages(*answers: Any) -> Any:
    """fetch(token): the answers in order, checking that each token is the previous page's."""
    queue = list(answers)
    previous: list[str] = [""]

    def fetch(token: str) -> Any:
        assert token == previous[0]
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        meta = answer.get("metadata")
        previous[0] = meta.get("continue", "") if isinstance(meta, dict) else ""
        return answer
    return fetch


def test_every_page_of_one_snapshot_is_collected():
    got = lists.collect(pages(page("7", ["a", "b"], "t1"), page("7", ["c"], "t2"), page("7", [])), "LIST pods")
    assert [m["name"] for m in got] == ["a", "b", "c"]


@pytest.mark.parametrize("answers,message", [
    ((page("7", ["a"], "t1"), page("9", ["b"])), "different snapshots"),
    ((page("7", ["a"], "t1"), lists.ListError("LIST pods failed: HTTP 410 Gone")), "410"),
    (({"kind": "Status", "code": 500},), "not a PartialObjectMetadataList"),
    (({**page("7", []), "items": [{"metadata": {"name": "x"}}]},), "without metadata.uid"),
    (({**page("7", []), "metadata": "?"},), "malformed"),
])
def test_an_incomplete_or_inconsistent_list_is_an_error(answers, message):
    with pytest.raises(lists.ListError, match=message):
        lists.collect(pages(*answers), "LIST pods")


def test_paging_is_bounded(monkeypatch):
    monkeypatch.setattr(lists, "MAX_PAGES", 3)
    with pytest.raises(lists.ListError, match="more than 3 pages"):
        lists.collect(lambda token: page("7", ["a"], "again"), "LIST pods")
