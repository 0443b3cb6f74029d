"""The package layout holds: one import direction (the import-linter contracts in pyproject.toml,
which `make test` runs first), no import cycle at all (lazy and TYPE_CHECKING imports count),
and a pure engine and admission core that load no I/O library."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import ROOT

IO_LIBRARIES = ("flask", "gunicorn", "kubernetes", "yaml", "ruamel", "prometheus_client", "subprocess")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of more than one module (each is a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules() -> None:
    built = grimp.build_graph("webhook", cache_dir=None)  # every import statement, lazy ones included
    graph = {m: built.find_modules_directly_imported_by(m) for m in built.modules}
    assert strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


@pytest.mark.parametrize("module", ["webhook.engine", "webhook.admission.handle"])
def test_the_pure_core_loads_no_io_library(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in {IO_LIBRARIES!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("offence", [
    ("engine/patch.py", "import yaml"),                            # an I/O library in the engine
    ("admission/plan.py", "from webhook.kube import namespaces"),  # an I/O sub-package in admission
    ("engine/keys.py", "from webhook.admission import decode"),    # upwards, against the layers
])
def test_import_linter_fails_when_a_forbidden_import_is_added(tmp_path: Path, offence: tuple[str, str]) -> None:
    """The contracts are checked on a copy of the package with one bad import added."""
    shutil.copytree(ROOT / "webhook", tmp_path / "webhook")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0, clean.stdout
    path, line = offence
    target = tmp_path / "webhook" / path
    target.write_text(target.read_text().replace("from __future__ import annotations\n",
                                                 f"from __future__ import annotations\n\n{line}\n", 1))
    broken = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert broken.returncode == 1 and "BROKEN" in broken.stdout, broken.stdout
