"""The documentation stays true to the code and to itself: every setting key is in the README's
annotation table with its embedded default, the README's set-up commands exist in the Makefile,
the README stays short, and every relative link in README.md and docs/ reaches an existing file
and heading."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import get_args

import pytest

from tests.conftest import ROOT
from webhook.admission.audit_record import Outcome
from webhook.admission.handle import Answer, handle
from webhook.cli.config import load
from webhook.engine.decisions import Reason
from webhook.engine.keys import KEYS, OUTPUT_KEYS
from webhook.engine.namespace import Namespace
from webhook.janitor.plan import Why as JanitorWhy
from webhook.kube.namespaces import StaticSource
from webhook.quarantine.reasons import Reason as QuarantineReason
from webhook.server import audit

README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
# The file that holds the annotation table: README.md (the newcomer's page). Move the table and
# point this at its new file.
ANNOTATION_TABLE = README_PATH
DOCS = sorted([README_PATH, *(ROOT / "docs").rglob("*.md")])
README_MAX_LINES = 200


def table_rows() -> dict[str, list[str]]:
    rows = {}
    for line in ANNOTATION_TABLE.read_text().splitlines():
        match = re.match(r"^\| `podmedic\.io/([a-z-]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", match.group(2))]
    return rows


def test_every_key_is_in_the_annotation_table_with_its_default():
    rows = table_rows()
    defaults = load().defaults
    name = ANNOTATION_TABLE.relative_to(ROOT)
    for key in KEYS:
        assert key in rows, f"{name} annotation table lacks podmedic.io/{key}"
        default = defaults[key]
        if default:
            assert f"`{default}`" in rows[key][1], f"{name}: default of {key} is not {default!r}"
    assert set(rows) - set(KEYS) <= OUTPUT_KEYS


def test_readme_starts_with_the_two_commands():
    head = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in head and "make test" in head
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_is_short_for_a_newcomer():
    lines = len(README.splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


# -- links -------------------------------------------------------------------------------------

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())  # keeps letters, digits, '_', '-', ' '
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for number, line in prose_lines(path.read_text()):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if not SCHEME.match(target):
                links.append((number, target))
    return links


def test_slug_follows_github():
    assert slug("Offline: `podmedic inject | explain | uninject`") == "offline-podmedic-inject--explain--uninject"
    assert slug("In the cluster without cert-manager: `podmedic certs install`") == \
        "in-the-cluster-without-cert-manager-podmedic-certs-install"
    assert slug("Benchmark (`make bench`)") == "benchmark-make-bench"
    assert slug("supervise: the wrapper") == "supervise-the-wrapper"


def test_docs_exist():
    assert (ROOT / "docs" / "README.md").exists(), "docs/README.md is the index of docs/"
    assert len(DOCS) > 2


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(doc: Path):
    problems = []
    for number, target in relative_links(doc):
        file_part, _, fragment = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        where = f"{doc.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif ROOT.resolve() not in (dest, *dest.parents):
            problems.append(f"{where}: outside the repository")
        elif fragment:
            if dest.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif fragment not in anchors(dest):
                problems.append(f"{where}: no heading with anchor #{fragment} in {dest.name}")
    assert not problems, "\n".join(problems)


REPO_PATH = re.compile(r"`((?:webhook|tests|deploy|examples|docs)/[\w./-]*[\w/])`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_in_the_docs_exists(doc: Path):
    """A file the docs name in backquotes (`webhook/...`, `tests/...`, `deploy/...`) exists, so a
    move of the code shows up here rather than as a stale page."""
    missing = [f"{doc.relative_to(ROOT)}:{number}: {path}"
               for number, line in enumerate(doc.read_text().splitlines(), 1)
               for path in REPO_PATH.findall(line)
               if "*" not in path and not (ROOT / path).exists()]
    assert not missing, "\n".join(missing)


REASONS_DOC = ROOT / "docs" / "observability.md"


def test_the_reason_table_says_what_the_code_says():
    """Every reason code, its warning flag and its text, as docs/observability.md's table shows
    them: a new or changed reason is a change to the table too (the code is the one source; the
    table is for people who read docs, not code)."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (yes|no) \| (.*) \|$", REASONS_DOC.read_text(), re.MULTILINE)
    expected = [(r.code, "yes" if r.warn else "no", r.text.replace("{prefix}", "podmedic.io/").replace("|", "\\|"))
                for r in Reason]
    assert rows == expected


def audit_bullet() -> str:
    """The "Audit line." bullet of docs/observability.md, up to the next bullet."""
    return REASONS_DOC.read_text().split("- **Audit line.**", 1)[1].split("\n- **", 1)[0]


def emitted(answer: Answer) -> dict[str, object]:
    """The audit line the server writes for `answer`, as a log pipeline reads it."""
    out = io.StringIO()
    assert answer.audit is not None
    audit.emit(answer.audit, out)
    return json.loads(out.getvalue())


def test_the_audit_line_is_the_documented_one():
    """The audit line's fields and its `outcome` values (also podmedic_reviews_total's label) are
    the ones docs/observability.md lists: log pipelines and alerts are written from that list, so
    a field or an outcome the code adds is a change to the list too."""
    bullet = audit_bullet()
    listed = re.search(r"`outcome` \(([^)]*)\)", bullet)
    assert listed, "docs/observability.md: the audit bullet lists no outcomes"
    outcomes = re.findall(r"`([a-z-]+)`", listed.group(1))
    assert sorted(outcomes) == sorted(get_args(Outcome))
    config = load(None)
    body = (ROOT / "examples" / "review.json").read_bytes()
    demo = StaticSource([Namespace("demo", MappingProxyType({"podmedic.io/inject": "enabled"}), MappingProxyType({}))])
    lines = [emitted(handle(body, "application/json", demo.get, config)),
             emitted(handle(body, "application/json", demo.get, config, late=True)),
             emitted(handle(b"{}", "application/json", demo.get, config))]
    assert [line["outcome"] for line in lines] == ["patched", "deadline-exceeded", "bad-request"]
    fields = set(re.findall(r"`([A-Za-z_]+)`", bullet)) - set(outcomes)
    assert set().union(*lines) == fields


DESIGN_DOC = ROOT / "docs" / "design.md"
# Command modules are named in the tree by their commands (serve, certs, ...), not by file.
LAYOUT_BY_COMMAND = {"cli"}


def layout_tree() -> dict[str, set[str]]:
    """docs/design.md's code layout: each package under webhook/ (`engine`, `engine/features`)
    and the file names its lines give."""
    text = DESIGN_DOC.read_text().split("## Code layout", 1)[1]
    block = text.split("```\n", 2)[1]
    tree: dict[str, set[str]] = {}
    parents: list[tuple[int, str]] = []
    for line in block.splitlines()[1:]:
        match = re.match(r"^( +)([a-z_]+)/ ", line)
        if match:
            depth = len(match.group(1))
            parents = [p for p in parents if p[0] < depth]
            parents.append((depth, "/".join([p[1] for p in parents] + [match.group(2)])))
        tree.setdefault(parents[-1][1], set()).update(re.findall(r"[\w-]+\.(?:py|c)\b|\b(?:supervise|pmctl|forensics)\b", line))
    return tree


def test_the_code_layout_names_every_module():
    """design.md's code layout says "a feature's file can be named from the tree": so every file of
    every package under webhook/ is in it, and none that is gone."""
    tree = layout_tree()
    problems = []
    for package in sorted(set(tree) - LAYOUT_BY_COMMAND):
        files = {p.name for p in (ROOT / "webhook" / package).iterdir() if p.is_file()} - {"__init__.py"}
        named = tree[package] - {"__init__.py"}
        problems += [f"webhook/{package}/{name} is not in the code layout" for name in sorted(files - named)]
        problems += [f"the code layout names webhook/{package}/{name}, which does not exist" for name in sorted(named - files)]
    packages = {p.parent.relative_to(ROOT / "webhook").as_posix() for p in (ROOT / "webhook").rglob("__init__.py")} - {"."}
    problems += [f"webhook/{package}/ is not in the code layout" for package in sorted(packages - set(tree))]
    assert not problems, "docs/design.md:\n" + "\n".join(problems)


# The reason codes of the controllers beside the webhook, and the page an operator reads them on.
CODE_TABLES = [(QuarantineReason, ROOT / "docs" / "quarantine.md"), (JanitorWhy, ROOT / "docs" / "logs.md")]


@pytest.mark.parametrize(("codes", "doc"), CODE_TABLES, ids=[doc.name for _, doc in CODE_TABLES])
def test_every_reason_code_of_the_controllers_is_in_its_doc(codes, doc):
    """The quarantine controller's and the log janitor's reason codes are their Events' text, the
    `quarantine-reason` annotation, the audit lines and the `reason` label of
    podmedic_quarantine_decisions_total: an operator alerts and greps on them from the doc, so
    each one is named there."""
    text = doc.read_text()
    missing = [code.value for code in codes if f"`{code.value}`" not in text]
    assert not missing, f"{doc.relative_to(ROOT)} names no {missing}"


AUDIT_EVENT = re.compile(r'"event": "(janitor[a-z-]*)"')


def test_every_janitor_audit_event_is_in_its_doc():
    """Each kind of line `podmedic logs janitor` writes (`"event": ...` in webhook/) is named in
    docs/logs.md: its audit lines are what an admin greps a failed Job's log for."""
    events = {event for path in (ROOT / "webhook").rglob("*.py") for event in AUDIT_EVENT.findall(path.read_text())}
    assert {"janitor", "janitor-summary"} <= events, "the pattern no longer finds the janitor's events"
    text = (ROOT / "docs" / "logs.md").read_text()
    missing = sorted(event for event in events if f"`{event}`" not in text and f'`"event":"{event}"`' not in text)
    assert not missing, f"docs/logs.md names no audit line {missing}"
