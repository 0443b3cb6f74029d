"""Golden files for the offline CLI (Istio's pattern): every `tests/golden/<case>.yaml|json` is
enrolled automatically with `<case>.injected.<ext>` and `<case>.explain.txt` beside it.

A missing or stale golden file fails. Regenerate after an intended change with

    make golden        # = PODMEDIC_UPDATE_GOLDEN=1 pytest tests/cli/test_golden.py

and review the diff. Each case also checks idempotency (injecting the injected output changes
nothing) and the round trip (uninject(inject(x)) == x as objects).
The same cases go through the webhook's path in tests/admission/test_golden.py.
"""

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from webhook import cli

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("PODMEDIC_UPDATE_GOLDEN") == "1"
ARGS_MARK = "# podmedic-test-args:"


def cases() -> list[Path]:
    return sorted(p for p in GOLDEN.iterdir() if p.suffix in (".yaml", ".json")
                  and ".injected." not in p.name)


def run(mode: str, path: Path, extra: list[str] = (), stdin: str = "") -> tuple[int, str, str]:
    args = cli.build_parser().parse_args([mode, "-f", str(path), *extra])
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, stdin=io.StringIO(stdin), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def case_args(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    return shlex.split(first[len(ARGS_MARK):]) if first.startswith(ARGS_MARK) else []


def golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"{path.name} is missing: run `make golden`"
    assert actual == path.read_text(), f"{path.name} is stale: run `make golden` and review the diff"


def load_all(text: str) -> list[object]:
    return [d for d in YAML(typ="safe").load_all(text) if d is not None]


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_golden(case: Path, tmp_path: Path) -> None:
    extra = case_args(case)
    code, injected, err = run("inject", case, extra)
    assert code == 0, err
    golden(case.with_name(f"{case.stem}.injected{case.suffix}"), injected)
    code, explained, err = run("explain", case, extra)
    assert code == 0, err
    golden(case.with_name(f"{case.stem}.explain.txt"), explained)

    out = tmp_path / f"out{case.suffix}"
    out.write_text(injected)
    code, again, _ = run("inject", out, extra)
    assert code == 0 and again == injected, "injecting an injected manifest must change nothing"
    code, back, _ = run("uninject", out)
    assert code == 0
    assert load_all(back) == load_all(case.read_text()), "uninject(inject(x)) must equal x"


def test_no_orphaned_golden_files() -> None:
    inputs = {p.stem for p in cases()}
    for p in GOLDEN.iterdir():
        stem = p.name.split(".", 1)[0]  # case names have no dots
        assert stem in inputs, f"{p.name} has no input case: delete it"
