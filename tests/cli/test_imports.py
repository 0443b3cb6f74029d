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
