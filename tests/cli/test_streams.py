"""`podmedic inject | uninject` over several sources (`-f dir/`, `-f a -f b`), the real CLI in a
subprocess: the output is one multi-document YAML stream, as kubectl reads it; a single JSON
source is JSON out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import pods
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
BOM = "\ufeff"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"


def run(mode: str, *paths: Path) -> str:
    exe = [str(BIN / "podmedic")] if (BIN / "podmedic").exists() else [sys.executable, "-m", "webhook.cli"]
    args = [a for p in paths for a in ("-f", str(p))]
    done = subprocess.run([*exe, mode, *args], capture_output=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def documents(out: str) -> list[Any]:
    return list(yaml.safe_load_all(out))


def names(out: str) -> list[str]:
    return [d["metadata"]["name"] for d in documents(out)]


def kubectl_names(out: str) -> list[str]:
    """The objects kubectl reads from the stream on its stdin. `label --local` reads it as `create -f -`
    does (the same resource builder: a stream whose first non-space byte is `{` is decoded as JSON,
    any other as YAML documents) with no cluster to ask."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH")
    done = subprocess.run([kubectl, "label", "--local", "-f", "-", "-o", "name", "podmedic-test=1"],
                          input=out.encode(), capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr.decode()
    return [line.split("/", 1)[1] for line in done.stdout.decode().splitlines()]


@pytest.mark.parametrize("mode", ["inject", "uninject"])
def test_a_json_file_and_a_yaml_file_are_one_yaml_stream(tmp_path, mode):
    """`-f dir/` with a JSON and a YAML file wrote the two back to back, no `---` between them:
    neither JSON nor YAML ("expected '<document start>'")."""
    pod = json.dumps(pods.pod())  # no final newline, as json.dumps writes it
    (tmp_path / "a.json").write_text(pod)
    (tmp_path / "b.yaml").write_text(CONFIG_MAP)
    out = run(mode, tmp_path)
    assert names(out) == ["web", "cm"] == kubectl_names(out), out
    if mode == "uninject":  # nothing to change: each file byte for byte, apart from the newline and separators
        assert out == "---\n" + pod + "\n---\n" + CONFIG_MAP


@pytest.mark.parametrize("mode", ["inject", "uninject"])
def test_a_stream_that_starts_with_a_json_file_is_read_as_yaml_by_kubectl(tmp_path, mode):
    """kubectl decodes a stream whose first non-space byte is `{` as JSON, all of it: a JSON file
    then a YAML one failed at the `---` between them ("error parsing STDIN: json: ... invalid
    character '-' in numeric literal"). A `---` before the first file makes the stream YAML."""
    pod = json.dumps(pods.pod())
    (tmp_path / "a.json").write_text(pod)
    (tmp_path / "b.json").write_text(json.dumps(pods.pod(name="cm") | {"kind": "ConfigMap"}))
    (tmp_path / "c.yaml").write_text(CONFIG_MAP.replace("cm", "c"))
    out = run(mode, tmp_path)
    assert kubectl_names(out) == ["web", "cm", "c"] == names(out), out
    assert run(mode, tmp_path / "a.json").startswith("{")  # one JSON source: JSON, as before


def test_a_later_file_with_a_yaml_directive_follows_a_document_end(tmp_path):
    """A directive may only follow a document end (`...`): after a `---` it is no directive, and
    `%` cannot start a scalar."""
    (tmp_path / "a.yaml").write_text(CONFIG_MAP.replace("cm", "a"))
    (tmp_path / "b.yaml").write_text("%YAML 1.2\n---\n" + CONFIG_MAP.replace("cm", "b"))
    (tmp_path / "c.yaml").write_text("# made by hand\n%TAG !k! tag:k8s.io,2024:\n---\n" + CONFIG_MAP.replace("cm", "c"))
    out = run("uninject", tmp_path)
    assert out == (CONFIG_MAP.replace("cm", "a") + "...\n" + (tmp_path / "b.yaml").read_text()
                   + "...\n" + (tmp_path / "c.yaml").read_text()), out
    assert names(out) == ["a", "b", "c"] == kubectl_names(out), out


def test_a_later_file_that_opens_with_comments_gets_no_empty_document(tmp_path):
    """A file whose first document is only comments (a header before its `---`) is written as it is:
    a `---` before the header would make an empty document of it."""
    (tmp_path / "a.yaml").write_text(CONFIG_MAP.replace("cm", "a"))
    (tmp_path / "b.yaml").write_text("# header\n---\n" + CONFIG_MAP.replace("cm", "b"))
    out = run("uninject", tmp_path)
    assert out == CONFIG_MAP.replace("cm", "a") + "# header\n---\n" + CONFIG_MAP.replace("cm", "b"), out
    assert None not in documents(out) and kubectl_names(out) == ["a", "b"], out


def test_a_yaml_file_without_a_final_newline_is_not_glued_to_the_next(tmp_path):
    """`name: a` and the next file's `apiVersion: v1` were one line, `name: aapiVersion: v1`."""
    (tmp_path / "a.yaml").write_text(CONFIG_MAP.replace("cm\n", "a"))
    (tmp_path / "b.yaml").write_text(CONFIG_MAP.replace("cm", "b"))
    out = run("uninject", tmp_path)
    assert names(out) == ["a", "b"] and out.endswith("\n"), out


def test_no_byte_order_mark_is_written(tmp_path):
    """A changed JSON document was written without its BOM, an unchanged one with it: a BOM in the
    middle of the stream, which no YAML reader takes. As kubectl: stripped on input, never written."""
    (tmp_path / "a.json").write_text(BOM + json.dumps(pods.pod()))
    (tmp_path / "b.json").write_text(BOM + json.dumps(pods.pod(name="cm") | {"kind": "ConfigMap"}))
    out = run("inject", tmp_path)
    assert BOM not in out and names(out) == ["web", "cm"], out
    assert json.loads(run("inject", tmp_path / "b.json"))["kind"] == "ConfigMap"  # one JSON source: JSON


def test_a_yaml_file_with_a_byte_order_mark_keeps_its_document_separator(tmp_path):
    """`<BOM>---` was not seen as a separator: the changed document lost its `---`, and the BOM
    stayed before the next file's."""
    pod = "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers: [{name: c, image: x}]\n"
    (tmp_path / "a.yaml").write_text(BOM + pod)
    (tmp_path / "b.yaml").write_text(BOM + "---\n" + CONFIG_MAP)
    assert run("inject", tmp_path / "a.yaml").startswith("---\napiVersion: v1\n")
    out = run("inject", tmp_path)
    assert out.startswith("---\napiVersion: v1\n") and out.endswith("---\n" + CONFIG_MAP), out
    assert BOM not in out and names(out) == ["web", "cm"], out
