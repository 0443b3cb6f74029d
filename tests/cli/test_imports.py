"""`podmedic serve` sets PROMETHEUS_MULTIPROC_DIR after the command line is parsed, and
prometheus_client picks its value class (per process, or shared files) when first imported: a
sub-command whose module imports it while the parser is built makes every gunicorn worker count
in its own memory, and /metrics shows no reviews. Each sub-command imports it only when it runs.
"""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_imports_no_prometheus_client() -> None:
    code = ("import sys; from webhook.cli import build_parser; build_parser(); "
            "print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_init_container_command_imports_only_its_own_module(tmp_path) -> None:
    """podmedic's init containers run `podmedic toolbox install` and `podmedic logdir` under a
    memory limit a LimitRange may lower: with every command module imported (cryptography, flask,
    the engine) the interpreter peaked at about 40 MB, with only theirs at about 14 MB."""
    heavy = ("cryptography", "flask", "yaml", "webhook.engine", "webhook.cli.certs", "webhook.cli.manifests")
    code = ("import sys; from webhook.cli import main; "
            f"code = main(['logdir', '--root', {str(tmp_path)!r}, '--pod-dir', 'ns_pod_uid', 'app']); "
            f"print(code, [m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "0 []"
    assert (tmp_path / "ns_pod_uid" / "app").is_dir()
