"""README stays true to the code: every setting key is documented in the annotation table with
its embedded default, and the README's set-up commands exist in the Makefile."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from webhook import config, settings

README = (ROOT / "README.md").read_text()


def table_rows() -> dict[str, list[str]]:
    rows = {}
    for line in README.splitlines():
        match = re.match(r"^\| `podmedic\.io/([a-z-]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", match.group(2))]
    return rows


def test_every_key_is_in_the_annotation_table_with_its_default():
    rows = table_rows()
    defaults = config.load().defaults
    for key in settings.KEYS:
        assert key in rows, f"README annotation table lacks podmedic.io/{key}"
        default = defaults[key]
        if default:
            assert f"`{default}`" in rows[key][1], f"README default of {key} is not {default!r}"
    assert set(rows) - set(settings.KEYS) <= settings.OUTPUT_KEYS


def test_readme_starts_with_the_two_commands():
    head = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in head and "make test" in head
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
