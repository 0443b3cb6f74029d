"""`podmedic inject | explain | uninject` on manifests, offline, with the webhook's own engine.

Each pod template is turned into the pod the API server would send (`metadata` + `spec`), run
through `admission.plan.plan()` exactly as the webhook does (engine, then verification), and the
resulting JSON Patch is applied to the template in place -- so the CLI and the webhook cannot
disagree, and a pod created from an injected template is recognised by the webhook (injection
marker) and left alone.

YAML goes through ruamel.yaml's round-trip mode, which keeps key order, comments and quoting;
the stream is split on document separators first, so documents that do not change are written
back byte for byte, separators included (a `%YAML 1.1`/`1.2` directive stays with its document
and is written again when it changes).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any, TextIO

import jsonpatch
import orjson
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from webhook.admission import podshape
from webhook.admission.plan import plan
from webhook.cli.config import load
from webhook.cli.env import path
from webhook.engine import uninject
from webhook.engine.config import ConfigError, GlobalConfig, unreadable
from webhook.engine.decisions import Decision, Reason
from webhook.engine.namespace import Lookup, Namespace
from webhook.engine.patch import tokens
from webhook.kube.namespaces import FileSource, StaticSource, live_lookup

# kind -> path of the pod template inside the object
TEMPLATES: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}
# Kinds without a pod template that pass through silently; anything else gets a note.
PLAIN_KINDS = frozenset({
    "Service", "ConfigMap", "Secret", "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
    "ClusterRoleBinding", "Ingress", "PersistentVolumeClaim", "PersistentVolume", "NetworkPolicy",
    "PodDisruptionBudget", "HorizontalPodAutoscaler", "StorageClass", "CustomResourceDefinition",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "LimitRange", "ResourceQuota", "PriorityClass", "Endpoints",
    "EndpointSlice", "IngressClass", "Kustomization",
})
_SEPARATOR = re.compile(r"^---(?:[ \t][^\r\n]*)?\r?$|^\.\.\.[ \t]*\r?$", re.M)  # a CRLF line's \r too

EXIT_OK, EXIT_INPUT, EXIT_NOT_INJECTED = 0, 1, 2


class InputError(Exception):
    """A file or document cannot be read; the message names the file, document and line."""


@dataclass
class Chunk:
    """One document of a stream: its original text (separator included) and parsed object."""

    source: str
    index: int
    text: str
    line: int = 1  # where the chunk starts in its file (1-based), for error messages
    doc: Any = None
    changed: bool = False
    version: tuple[int, int] | None = None  # of its %YAML directive, written again when it changes
    is_json: bool = False  # a JSON source, written back as JSON when it changes


@dataclass
class Workload:
    """A pod template found in a document, with a display name for explain."""

    name: str
    namespace: str
    template: Any  # the ruamel map holding metadata + spec
    path: tuple[str | int, ...] = ()  # keys from the document's root to the template


@dataclass
class Run:
    config: GlobalConfig
    namespaces: Any  # callable name -> Lookup
    default_namespace: str
    err: TextIO
    failed: bool = False
    explained: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------ reading

def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=2, offset=0)
    return y


def _directives_only(text: str) -> bool:
    """Directives (`%YAML 1.2`) and comments only: the head of the document after them."""
    separator = _SEPARATOR.match(text)
    lines = text[separator.end() if separator else 0:].splitlines()
    return any(line.startswith("%") for line in lines) and all(
        line.startswith(("%", "#")) or not line.strip() for line in lines)


def split(source: str, text: str) -> list[Chunk]:
    """Split a stream at document separators, keeping each separator with its document (and
    directives before a `---` with the document they belong to)."""
    starts = [0] + [m.start() for m in _SEPARATOR.finditer(text) if m.start() > 0]
    bounds: list[tuple[int, int]] = []
    for a, b in zip(starts, starts[1:] + [len(text)]):
        if bounds and text.startswith("---", a) and _directives_only(text[bounds[-1][0]:a]):
            bounds[-1] = (bounds[-1][0], b)
        else:
            bounds.append((a, b))
    return [Chunk(source, i, text[a:b], text.count("\n", 0, a) + 1) for i, (a, b) in enumerate(bounds)]


def parse(chunk: Chunk) -> None:
    """Parse one document (None when it is empty or only comments); errors name file,
    document index and line."""
    separator = _SEPARATOR.match(chunk.text)
    body = chunk.text[separator.end():] if separator else chunk.text
    if all(line.lstrip().startswith("#") or not line.strip() for line in body.splitlines()):
        return
    yaml = _yaml()
    try:
        chunk.doc = yaml.load(body)
        chunk.version = yaml.version
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # the body keeps the separator's line break, so mark.line counts from the separator line
        where = f", line {chunk.line + mark.line}" if mark is not None else ""
        raise InputError(f"{chunk.source}: document {chunk.index}{where}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:  # ruamel's parser recurses per level: some hundreds of nested [ or {
        raise InputError(f"{chunk.source}: document {chunk.index}: nested too deeply to read") from None
    except ValueError as exc:  # a scalar ruamel cannot construct: a huge integer, an unquoted 2020-13-45
        raise InputError(f"{chunk.source}: document {chunk.index}{_unreadable(chunk, body, exc)}") from None


def _unreadable(chunk: Chunk, body: str, exc: ValueError) -> str:
    """Why a value cannot be read, and on which line when it is a number too long to read."""
    problem = unreadable(exc)
    number = _long_integer(body) if "digits" in problem else None
    return f"{f', line {chunk.line + number.start_mark.line}' if number else ''}: {problem}"


def _long_integer(body: str) -> Any:
    """The first integer scalar with more digits than Python reads, as ruamel composes it (the
    document read again, on this error path only): a search of the text for a run of digits found
    one in a quoted string or a comment first, and took seconds on a large file."""
    limit = sys.get_int_max_str_digits()
    pending = [_yaml().compose(body)]
    seen: set[int] = set()  # an alias is the node it names: visited once
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if node.tag == "tag:yaml.org,2002:int" and sum(c.isdigit() for c in node.value) > limit:
                return node
        elif isinstance(node, MappingNode):
            pending.extend(reversed([n for pair in node.value for n in pair]))
        elif isinstance(node, SequenceNode):
            pending.extend(reversed(node.value))
    return None


def _files(path: Path) -> list[Path]:
    """The file, or the manifests in the directory: one without any is an error, as kubectl's
    "no objects passed to apply" (an exit 0 with no output looked like nothing to do)."""
    if not path.is_dir():
        return [path]
    files = sorted(f for f in path.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
    if not files:
        raise InputError(f"{path}: no .yaml, .yml or .json file in this directory")
    return files


def read_sources(paths: list[str], stdin: TextIO | None) -> Iterator[tuple[str, str]]:
    for path in paths:
        if path == "-":
            if stdin is None:  # started with fd 0 closed (`<&-`)
                raise InputError("<stdin>: cannot read: standard input is closed")
            yield "<stdin>", _as_read(stdin.read())
            continue
        for f in _files(Path(path)):
            try:
                with f.open(newline="") as file:  # line endings as written: CRLF ones are kept (_render)
                    text = file.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{f}: cannot read: {exc}") from None
            yield str(f), _as_read(text)


def _as_read(text: str) -> str:
    """A source's text without its UTF-8 byte order mark (Windows editors), as kubectl reads it:
    kept, it hid a JSON file's `{` and a YAML file's first `---`, and was written again in the
    middle of a stream of several sources, where no YAML reader takes it."""
    return _cr_as_lf(text.removeprefix("\ufeff"))


def _cr_as_lf(text: str) -> str:
    """Classic Mac line endings (\r alone) as \n, as universal newlines read them: the document
    separators are found by line, and a CR file was one line to them. CRLF is kept (_render)."""
    return text.replace("\r", "\n") if "\r" in text and "\r\n" not in text else text


# ------------------------------------------------------------------ workloads

def workloads(doc: Any, default_ns: str, err: TextIO, where: str,
              path: tuple[str | int, ...] = ()) -> Iterator[Workload]:
    if not isinstance(doc, dict):
        print(f"podmedic: {where}: not a Kubernetes object; passed through", file=err)
        return
    kind = doc.get("kind")
    if kind is not None and not isinstance(kind, str):  # a list or map cannot even be looked up below
        print(f"podmedic: {where}: kind is not a string; passed through", file=err)
        return
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and "items" in doc):
        items = doc.get("items") or []
        if not isinstance(items, list):  # a number cannot be iterated, a string would be letter by letter
            print(f"podmedic: {where}: {kind} items is not a list; passed through", file=err)
            return
        for i, item in enumerate(items):
            yield from workloads(item, default_ns, err, f"{where} item {i}", (*path, "items", i))
        return
    if kind not in TEMPLATES:
        if kind not in PLAIN_KINDS:
            print(f"podmedic: {where}: kind {kind!r} has no pod template podmedic knows; passed through", file=err)
        return
    template: Any = doc
    for key in TEMPLATES[kind]:
        template = template.get(key) if isinstance(template, dict) else None
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        print(f"podmedic: {where}: {kind} has no pod template spec; passed through", file=err)
        return
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    yield Workload(f"{kind}/{metadata.get('name', '?')}", str(metadata.get("namespace") or default_ns), template,
                   (*path, *TEMPLATES[kind]))


def as_pod(template: Any) -> dict[str, Any]:
    """The pod the API server would send for this template, as plain JSON types read by the
    webhook's own decoder (orjson: an integer beyond 64 bits is a float, as at admission, not one
    the patch encoder refuses). Its metadata stays exactly as in the template (even absent), so
    the patch applies to the template too."""
    keys = ("metadata", "spec") if "metadata" in template else ("spec",)
    return {"apiVersion": "v1", "kind": "Pod", **orjson.loads(json.dumps({k: template[k] for k in keys}, allow_nan=False))}


def _expanded_size(node: Any, seen: dict[int, int]) -> int:
    """About the size of `node` as JSON, each alias counted as the copy JSON makes of it; a node
    met again is priced from `seen`, so a small graph of aliases costs little to measure."""
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = 0  # a node inside itself (a recursive alias) adds nothing
    if isinstance(node, dict):
        size = 2 + sum(_expanded_size(k, seen) + _expanded_size(v, seen) + 2 for k, v in node.items())
    elif isinstance(node, list):
        size = 2 + sum(_expanded_size(item, seen) + 1 for item in node)
    else:
        size = len(str(node)) + 2
    seen[id(node)] = size
    return size


def _too_large(template: Any, size: int, config: GlobalConfig) -> str:
    """Why a template is refused for its size: aliases are blamed only when the template uses a
    map or list in more than one place (a plain large pod was "too many YAML aliases")."""
    aliased = any(n > 1 for n in _uses(template, {}).values())
    return (f"the pod is about {size} bytes of JSON{' once its YAML aliases are expanded' if aliased else ''}, "
            f"over maxRequestBytes ({config.max_request_bytes})")


def inject_template(run: Run, w: Workload) -> tuple[list[dict[str, Any]], list[Decision]]:
    """The webhook's patch for a pod made from this template (verified), and the decisions."""
    size = _expanded_size(w.template, {})
    if size > run.config.max_request_bytes:  # aliases (a billion laughs): as_pod would expand them forever
        return [], [Decision("pod", None, Reason.MALFORMED_POD, _too_large(w.template, size, run.config))]
    try:
        pod = as_pod(w.template)
    except (TypeError, ValueError) as exc:  # a YAML date, !!binary, tagged value, .inf: no pod the API server gets
        return [], [Decision("pod", None, Reason.MALFORMED_POD, _not_json(exc))]
    problem = podshape.problem(pod)  # the webhook answers such a review with a 400
    if problem:
        return [], [Decision("pod", None, Reason.MALFORMED_POD, problem.replace("request.object.", ""))]
    planned, _ = plan(copy.deepcopy(pod), run.namespaces(w.namespace), run.config, offline=True)  # as the webhook does
    decisions = list(planned.report.decisions)
    if planned.denied or planned.patch is None:
        return [], decisions
    return orjson.loads(planned.patch), decisions


def _not_json(exc: TypeError | ValueError) -> str:
    """What to do about a value JSON cannot hold: a date or a tagged value is text once quoted,
    but a quoted `.inf` is a string where a number belongs, no better. YAML reads a number beyond
    a float's range (`1e400`) as infinity: the message names that too, so it is true of what the
    user wrote."""
    if "Out of range float" in str(exc):  # json.dumps(allow_nan=False)
        return ("a number JSON cannot hold (.inf, .nan, or beyond its range such as 1e400): "
                "replace it with a finite number")
    return f"a value JSON cannot hold, quote it: {exc}"


def _apply_to_template(uses: dict[int, int], doc: Any, w: Workload, ops: list[dict[str, Any]]) -> None:
    """The ops address /metadata/... and /spec/..., which a template has as well; applying
    them to the ruamel map in place keeps its comments and key order. A node the document uses
    in more than one place (a YAML alias) is copied first where the patch goes through it, from
    the document's root down (a List item, a Deployment's `spec`, the template, a container's
    `env`): patched in place, it would be patched once per use (two containers' `env: *env` each
    got podmedic's variables twice) and change its other places too (a `template: *t` of a
    workload in a namespace that has not opted in). `uses` is _uses() of the document."""
    template = doc
    for step in w.path:
        template = _own(uses, template, step)
    for op in ops:
        node = template
        for token in tokens(op["path"])[:-1]:
            key: Any = int(token) if isinstance(node, list) and token.isdigit() else token
            if not isinstance(node, (dict, list)) or key not in (range(len(node)) if isinstance(node, list) else node):
                break
            node = _own(uses, node, key)
    jsonpatch.apply_patch(template, ops, in_place=True)


def _own(uses: dict[int, int], parent: Any, key: Any) -> Any:
    """parent[key], replaced by a copy of its own first when the document uses it elsewhere too."""
    child = parent[key]
    if isinstance(child, (dict, list)) and uses.get(id(child), 1) > 1:
        uses[id(child)] -= 1
        parent[key] = child = copy.deepcopy(child)
        _uses(child, uses)  # the copy's own shared nodes (its `env: &e` ... `env: *e`) are shared in it too
    return child


def _uses(node: Any, uses: dict[int, int]) -> dict[int, int]:
    """How many places of the document each map and list is used at (more than one: an alias)."""
    uses[id(node)] = uses.get(id(node), 0) + 1
    if uses[id(node)] == 1:  # its children are counted once, however often it is used
        for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
            if isinstance(child, (dict, list)):
                _uses(child, uses)
    return uses


# ------------------------------------------------------------------ commands

def _inject_chunk(run: Run, chunk: Chunk, mode: str) -> None:
    uses: dict[int, int] | None = None  # counted once per document, when a first patch is applied
    for w in workloads(chunk.doc, run.default_namespace, run.err, f"{chunk.source}: document {chunk.index}"):
        if mode == "uninject":
            try:
                chunk.changed |= uninject.template(w.template, run.config)
            except uninject.MarkerError as exc:  # the marker is untrusted input: one document's error
                run.failed = True
                chunk.changed = False  # written as it was read, even if an earlier item was uninjected
                print(f"podmedic: {chunk.source}: document {chunk.index}: {w.name} could not be uninjected: "
                      f"{run.config.status_key}: {exc}; document left unchanged", file=run.err)
                return
            continue
        ops, decisions = inject_template(run, w)
        failures = [d for d in decisions if d.reason in (Reason.VERIFY_FAILED, Reason.MUTATOR_ERROR, Reason.MALFORMED_POD)]
        if failures:
            run.failed = True
            why = "; ".join(d.detail or d.reason.value for d in failures)
            print(f"podmedic: {chunk.source}: document {chunk.index}: {w.name} could not be injected: {why}",
                  file=run.err)
        if mode == "explain":
            run.explained.extend({"workload": w.name, "namespace": w.namespace, **d.as_dict(),
                                  "why": d.reason.render(run.config.prefix)} for d in decisions)
        elif ops:
            uses = _uses(chunk.doc, {}) if uses is None else uses
            _apply_to_template(uses, chunk.doc, w, ops)
            chunk.changed = True


def _render(chunk: Chunk) -> str:
    """A changed document in the line ending most of its lines were read with (CRLF stays CRLF;
    one CRLF line pasted among LF ones does not turn the document to CRLF). ruamel keeps a CRLF
    line's \r in its comments: each line ending is made \n first, then the document's, once."""
    if not chunk.changed:
        return chunk.text
    return _dump(chunk).replace("\r\n", "\n").replace("\n", _newline(chunk.text))


def _newline(text: str) -> str:
    """The line ending most of the text's lines have."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"


def _dump(chunk: Chunk) -> str:
    if chunk.is_json:
        return json.dumps(chunk.doc, indent=2) + "\n"
    out = StringIO()
    separator = _SEPARATOR.match(chunk.text)
    if separator:
        out.write(separator.group(0).rstrip("\r") + "\n")
    yaml = _yaml()
    yaml.version = chunk.version  # ruamel writes the directive and its `---` again
    yaml.dump(chunk.doc, out)
    return out.getvalue()


def process(run: Run, sources: list[tuple[str, str]], mode: str, out: TextIO) -> None:
    chunks_by_source: list[list[Chunk]] = []
    for source, text in sources:
        chunks = [Chunk(source, 0, text, is_json=True)] if _is_json(text) else split(source, text)
        for chunk in chunks:
            parse(chunk)  # every document parsed before anything is written: no half output
        chunks_by_source.append(chunks)
    for n, chunks in enumerate(chunks_by_source):
        for chunk in chunks:
            if chunk.doc is not None:
                _inject_chunk(run, chunk, mode)
        if mode != "explain":
            text = "".join(_render(chunk) for chunk in chunks)
            out.write(_in_stream(text, chunks[0], n > 0) if len(chunks_by_source) > 1 else text)


def _in_stream(text: str, first: Chunk, after: bool) -> str:
    """One source's text as a part of the stream of several (one source is written as it is: JSON
    in, JSON out). It ends in a line break: a file without its last one was glued to the next
    file's first line. A document opening it is kept apart from the previous source's by a `---`
    (a JSON and a YAML file were written back to back, neither JSON nor YAML), or a `...` when it
    starts with its own directives (`%YAML`, `%TAG`: only a document end may come before them),
    unless it opens with its own separator. The first source gets a `---` too when it is JSON:
    kubectl reads a stream starting with `{` as one JSON text and failed at the next `---`."""
    newline = _newline(text)
    if text and not text.endswith("\n"):
        text += newline
    if not (after or first.is_json) or first.doc is None or _SEPARATOR.match(text):
        return text
    return ("..." if _opens_with_directive(text) else "---") + newline + text


def _opens_with_directive(text: str) -> bool:
    """Is the first line that is no comment or blank a directive (`%YAML 1.2`, `%TAG ! tag:...`)?"""
    line = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    return line.startswith("%")


def _is_json(text: str) -> bool:
    """A JSON stream, written back as JSON (its byte order mark is gone: _as_read)."""
    return text.lstrip().startswith(("{", "["))


# ------------------------------------------------------------------ explain output

# What an OOM kill leaves depends on the node, not on the pod: said once under the table.
OOM_NOTE = ("\nOOM kills: on cgroup v2 (kubelet >= 1.28) the kill takes the whole container, wrapper included:\n"
            "only the pre-mortem snapshot (memwatch) and the next start's summary remain. On cgroup v1, or with\n"
            "the kubelet's singleProcessOOMKill: true, the wrapper survives and writes an -exit-oomkilled bundle\n"
            "(with exit bundles on). See docs/toolbox.md, \"Memory watch\".\n")


def explain_table(rows: list[dict[str, Any]]) -> str:
    header = ("WORKLOAD", "CONTAINER", "FEATURE", "RESULT", "REASON", "LEVEL", "WHY")
    lines = [header] + [(r["workload"], r.get("container", "-"), r["feature"],
                         "applied" if r["applied"] else "skipped", r["reason"], r["level"],
                         r["why"] + (f" ({r['detail']})" if r.get("detail") else ""))
                        for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + str(line[-1]) + "\n"
                   for line in lines)


# ------------------------------------------------------------------ namespace settings

def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def namespace_lookup(args: argparse.Namespace, config: GlobalConfig) -> Any:
    """Offline by default: with no namespace flags, every namespace counts as opted in."""
    if args.namespaces_file:
        return FileSource(args.namespaces_file, config.logs.watched_claim).get
    if args.kubeconfig:
        return live_lookup(args.kubeconfig, config.logs.watched_claim)
    annotations = _pairs(args.namespace_annotations, "--namespace-annotations")
    if not args.namespace_annotations:
        annotations = {config.prefix + "inject": "enabled"}
    labels = _pairs(args.namespace_labels, "--namespace-labels")

    def lookup(name: str) -> Lookup:
        return StaticSource([Namespace(name, annotations, labels)]).get(name)

    return lookup


# ------------------------------------------------------------------ CLI

def register(sub: Any) -> None:
    for name, help_text in (("inject", "inject pod templates in manifests, offline, as the webhook would"),
                            ("explain", "show, per workload, container and feature, what podmedic would do and why"),
                            ("uninject", "remove exactly what podmedic added to manifests")):
        p = sub.add_parser(name, help=help_text, description=help_text + ". Exit codes: 0 ok, 1 usage, "
                           "input or output error, 2 a document could not be injected (or uninjected: a malformed marker); "
                           "such a document is written out unchanged.")
        p.add_argument("-f", "--filename", action="append", required=True, type=path(),  # '': Path('') is '.'
                       help="a YAML/JSON file, a directory of them, or - for stdin (repeatable)")
        if name == "explain":
            p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
        if name != "uninject":
            p.add_argument("--namespace-annotations", nargs="+", default=[], metavar="KEY=VALUE",
                           help="the namespace's annotations (default: podmedic.io/inject=enabled)")
            p.add_argument("--namespace-labels", nargs="+", default=[], metavar="KEY=VALUE",
                           help="the namespace's labels (pod-security.kubernetes.io/enforce=...)")
            p.add_argument("--namespaces-file", type=path(), help="Namespace objects as `kubectl get ns -o yaml` prints them")
            p.add_argument("--kubeconfig", type=path(), help="read namespaces from a live cluster")
            p.add_argument("-n", "--namespace", default="default",
                           help="namespace of documents that name none (default: default)")
        p.add_argument("--config", type=path(), help="global configuration, as for `podmedic serve`")
        p.set_defaults(func=main, mode=name)


def main(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    try:
        config = load(args.config)
        lookup = namespace_lookup(args, config) if args.mode != "uninject" else None
        run = Run(config, lookup, getattr(args, "namespace", "default"), err)
        process(run, list(read_sources(args.filename, stdin)), args.mode, out)
    except BrokenPipeError:  # the reader is gone (`| head`): cli.main's quiet exit 0, as for every command
        raise
    except (InputError, ConfigError, ValueError, OSError) as exc:
        print(f"podmedic {args.mode}: {exc}", file=err)
        return EXIT_INPUT
    if args.mode == "explain":
        _write_explain(run.explained, args.output, out)
    return EXIT_NOT_INJECTED if run.failed else EXIT_OK


def _write_explain(rows: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(json.dumps(rows, indent=2) + "\n")
    elif fmt == "yaml":
        _yaml().dump(rows, out)
    else:
        out.write(explain_table(rows))
        if any(r["feature"] == "supervisor" and r["applied"] for r in rows):
            out.write(OOM_NOTE)
