"""Explicit RFC 6902 operations against the pod exactly as it was sent.

Mutators never diff objects (jsonpatch.make_patch emits invalid or misordered patches on some
inputs and walks the whole pod). They call this builder, which knows the original document and
what the patch itself has created, so it emits `add` of a whole map or list the first time a
parent is missing (the API server rejects adds below a missing parent), `/-` appends after that,
and `replace` only for fields that exist. mark() and rollback() let a failing mutator be rolled
back without touching what other features already emitted.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

Path = tuple[str | int, ...]
Doc = TypeVar("Doc")

_MISSING = object()
_UNSEEN = object()  # PatchBuilder._nodes: not looked up yet (a missing path is kept as _MISSING)


@lru_cache(maxsize=4096)
def pointer(path: Path) -> str:
    """A JSON pointer, escaping '~' and '/' (annotation keys contain '/'). Memoised: the same
    few dozen paths (container fields, the marker annotation) recur in every review."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def tokens(ptr: str) -> list[str]:
    """The reference tokens of a JSON pointer, unescaped: the inverse of pointer()."""
    parts = ptr.split("/")[1:]
    return [p.replace("~1", "/").replace("~0", "~") for p in parts] if "~" in ptr else parts


def _child(node: Any, part: str | int) -> Any:
    """The member or element `part` of `node` in the original document, or _MISSING. (`add`
    over an existing null member replaces it, so callers treat None like _MISSING.)"""
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and 0 <= part < len(node) else _MISSING
    return node.get(part, _MISSING) if isinstance(node, dict) else _MISSING  # values are never _MISSING


class PatchBuilder:
    """Accumulates operations; `created` remembers containers this patch added."""

    def __init__(self, original: dict[str, Any]):
        # original nodes by path, for the walk from the pod (pod-level fields, missing parents);
        # a container's fields are looked up from its spec instead (the `parent` of set/append)
        self._nodes: dict[Path, Any] = {(): original}
        self.ops: list[dict[str, Any]] = []
        self.created: list[Path] = []  # maps/lists the patch created, in order (for uninject)
        self._created_set: set[Path] = set()
        # (path, original) where the patch overwrote a null or empty member: uninject puts it back
        self.replaced: list[tuple[Path, Any]] = []

    def _lookup(self, path: Path) -> Any:
        """The value at `path` in the original document, or _MISSING, from the remembered
        parent node."""
        node = self._nodes.get(path, _UNSEEN)
        if node is _UNSEEN:
            node = self._nodes[path] = _child(self._lookup(path[:-1]), path[-1])
        return node

    def exists(self, path: Path) -> bool:
        """Present in the original (and not null) or created by this patch."""
        original = self._lookup(path)
        return path in self._created_set or (original is not _MISSING and original is not None)

    def ensure_map(self, path: Path, parent: dict[Any, Any] | None = None) -> None:
        """Make sure the map at `path` exists, creating missing ancestors as maps. `parent`: the
        original map at path[:-1] if the caller has it (a container's spec)."""
        if not path or path in self._created_set:
            return
        original = self._original_at(path, parent)
        if original is not _MISSING and original is not None:
            return
        if parent is None:
            self.ensure_map(path[:-1])
        self._note_replaced(path, original)
        self.ops.append({"op": "add", "path": pointer(path), "value": {}})
        self._mark_created(path)

    def _note_replaced(self, path: Path, original: Any) -> None:
        """Remember a null or empty original this path's operation overwrites (looked up once by
        the caller): the features' records cannot tell `annotations: null` or `command: []`
        from an absent field."""
        if original is None or (not original and isinstance(original, (dict, list, str))):  # _MISSING is truthy
            self.replaced.append((path, original))

    def _mark_created(self, path: Path) -> None:
        self.created.append(path)
        self._created_set.add(path)

    def _original_at(self, path: Path, parent: dict[Any, Any] | None) -> Any:
        """The original at `path`, from `parent` (the original map at path[:-1]) when the caller
        holds it: a container's field is then one dict lookup, where the walk from the pod
        looks up and remembers the field's path and its container's (about 170 new paths in a
        20-container pod's review)."""
        return self._lookup(path) if parent is None else parent.get(path[-1], _MISSING)

    def set(self, path: Path, value: Any, parent: dict[Any, Any] | None = None) -> None:
        """Set a map field: `replace` when the original has it, else `add` (parents first).
        `parent`: the original map at path[:-1] if the caller has it (a container's spec)."""
        original = self._original_at(path, parent)
        if path not in self._created_set:
            self._note_replaced(path, original)
        if original is not _MISSING and original is not None:
            self.ops.append({"op": "replace", "path": pointer(path), "value": value})
            return
        if parent is None:
            self.ensure_map(path[:-1])
        self.ops.append({"op": "add", "path": pointer(path), "value": value})

    def append(self, list_path: Path, value: Any, parent: dict[Any, Any] | None = None) -> None:
        """Append to a list, creating it (as `[value]`) when neither original nor patch has it.
        `parent`: the original map at list_path[:-1] if the caller has it (a container's spec)."""
        created = list_path in self._created_set
        original = _MISSING if created else self._original_at(list_path, parent)
        if created or (original is not _MISSING and original is not None):
            self.ops.append({"op": "add", "path": pointer(list_path) + "/-", "value": value})
            return
        if parent is None:
            self.ensure_map(list_path[:-1])
        self._note_replaced(list_path, original)
        self.ops.append({"op": "add", "path": pointer(list_path), "value": [value]})
        self._mark_created(list_path)

    def prepend(self, list_path: Path, value: Any) -> None:
        """Insert at index 0 (init containers that must run first)."""
        if self.exists(list_path):
            self.ops.append({"op": "add", "path": pointer(list_path) + "/0", "value": value})
        else:
            self.append(list_path, value)

    def mark(self) -> tuple[int, int, int]:
        """Where the patch stands now, for rollback(). (The engine's feature loop marks and rolls
        back in the handlers of the try it has anyway: a `with` block per feature and container
        cost 2.6 % of a large review's instructions.)"""
        return len(self.ops), len(self.created), len(self.replaced)

    def rollback(self, mark: tuple[int, int, int]) -> None:
        """Drop every operation, created path and replaced value recorded since mark()."""
        ops, created, replaced = mark
        del self.ops[ops:]
        del self.replaced[replaced:]
        for path in self.created[created:]:
            self._created_set.discard(path)
        del self.created[created:]


@lru_cache(maxsize=4096)
def _split(ptr: str) -> tuple[tuple[str, ...], tuple[str | int, ...], str]:
    """A pointer's parent tokens, the same with ASCII-digit tokens as ints (the keys of a
    walk that does not ask each node whether it is a list), and its last token (memoised: the
    same paths recur in every patch)."""
    parts = tokens(ptr)
    parents = tuple(parts[:-1])
    return parents, tuple(int(p) if p.isascii() and p.isdigit() else p for p in parents), parts[-1]


def _walk(doc: Any, parents: tuple[str, ...]) -> Any:
    """The node at `parents`, a list's element by the token's int value (RFC 6901)."""
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def apply_in_place(doc: Doc, ops: list[dict[str, Any]]) -> Doc:
    """Apply this builder's kind of patch (add and replace, RFC 6902 semantics) to `doc` in
    place. The hot path's verification uses it instead of jsonpatch, which parses a pointer
    object and deep-copies every value for each operation; the tests apply every patch with
    jsonpatch as well, so the two cannot drift apart unnoticed.

    Values are inserted as they are, not copied: `doc` and `ops` share them afterwards, and a
    later `/-` append into a list an earlier `add` created changes that earlier operation too.
    So pass operations made for this one use (verify.apply decodes them from the encoded patch)."""
    for op in ops:
        parents, keys, last = _split(op["path"])
        parent: Any = doc
        try:  # a map's key or a list's index each (JSON maps have no int keys)
            for key in keys:
                parent = parent[key]
            if isinstance(parent, str):  # possibly a character, reached by an int key
                raise TypeError
        except (KeyError, IndexError, TypeError):  # the walk by type tells what is wrong
            parent = _walk(doc, parents)
        kind, value = op["op"], op["value"]
        if isinstance(parent, list):
            if kind != "add":
                raise ValueError(f"{kind} into a list is not emitted by podmedic: {op['path']}")
            if last == "-":
                parent.append(value)
            else:
                parent.insert(int(last), value)
        elif kind == "add" or (kind == "replace" and last in parent):
            parent[last] = value
        else:
            raise KeyError(f"{kind} of missing {op['path']}")
    return doc
