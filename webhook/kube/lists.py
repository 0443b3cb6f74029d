"""A complete, consistent LIST: every page of one snapshot, or an error.

The janitor's truth is "the pods that exist": a pod missing from its list would have its log
directory deleted, so a list is used only when it is known to be whole (the kubelet's rule for
/var/log/pods). Pages are fetched with `limit`/`continue`, which the API server serves from one
resourceVersion; every page must say the same resourceVersion, the last one must have no
`continue`, and any failure (HTTP error, expired continue token, a malformed page, too many
pages) raises ListError: the caller then acts on nothing.

Only metadata travels (PartialObjectMetadataList, as the garbage collector lists): a pod's spec
and status are not needed and would cost the API server and the janitor ten times more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the client is slow to import
    import kubernetes

METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
MAX_PAGES = 10_000


class ListError(RuntimeError):
    """The list is not known to be complete; nothing may be concluded from it."""


def list_metadata(api: kubernetes.client.ApiClient, kind: Literal["pods", "namespaces"], page_size: int = 500,
                  timeout: float = 30.0) -> list[dict[str, Any]]:
    """The `metadata` of every pod (all namespaces) or namespace, from one snapshot."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core = CoreV1Api(api)
    lister = core.list_pod_for_all_namespaces if kind == "pods" else core.list_namespace
    what = f"LIST {kind}"

    def fetch(token: str) -> Any:
        try:
            response = lister(limit=page_size, _continue=token or None, _preload_content=False,
                              _request_timeout=timeout, _headers={"Accept": METADATA_ONLY})
            # _preload_content=False returns the urllib3 response, not the model the annotations name
            return json.loads(response.data)  # type: ignore[union-attr]
        except ApiException as exc:
            raise ListError(f"{what} failed: HTTP {exc.status} {exc.reason}") from None
        except (HTTPError, OSError, ValueError) as exc:
            raise ListError(f"{what} failed: {exc}") from None

    return collect(fetch, what)


def collect(fetch: Callable[[str], Any], what: str) -> list[dict[str, Any]]:
    """Every page from `fetch(continue token)`, checked to be one whole snapshot."""
    items: list[dict[str, Any]] = []
    token, version = "", None
    for _ in range(MAX_PAGES):
        meta, batch = _page(what, fetch(token))
        if version is not None and meta.get("resourceVersion") != version:
            raise ListError(f"{what}: pages from different snapshots ({version}, {meta.get('resourceVersion')})")
        version = meta.get("resourceVersion")
        items.extend(batch)
        token = meta.get("continue") or ""
        if not token:
            return items
    raise ListError(f"{what}: more than {MAX_PAGES} pages")


def _page(path: str, page: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(list metadata, item metadata) of a well-formed page; ListError otherwise."""
    if not isinstance(page, dict) or page.get("kind") != "PartialObjectMetadataList":
        raise ListError(f"{path}: unexpected answer (not a PartialObjectMetadataList)")
    meta, items = page.get("metadata"), page.get("items")
    if items is None:
        items = []
    if not isinstance(meta, dict) or not isinstance(items, list):
        raise ListError(f"{path}: malformed page")
    out = []
    for item in items:
        metadata = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(metadata, dict) or not metadata.get("uid") or not metadata.get("name"):
            raise ListError(f"{path}: an item without metadata.uid or name")
        out.append(metadata)
    return meta, out
