"""Settings precedence as a table (webhook.engine.settings.Resolved): global < namespace < pod <
container (`<prefix><key>.<container>`), pod annotations only for the admin's podOverridable
keys, unknown keys and empty values, and invalid values naming their annotation and level.

Two configurations: the embedded one (`webhook.cli.config.load()`: every key pod-overridable),
and an admin's file merged over it that changes a global default and keeps all but four keys
for the namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from webhook.cli.config import load
from webhook.engine.config import GlobalConfig
from webhook.engine.keys import Level, parse_mount_path
from webhook.engine.settings import Ignored, InvalidSetting, Resolved

P = "podmedic.io/"
G, N, POD, C = Level.GLOBAL, Level.NAMESPACE, Level.POD, Level.CONTAINER

ADMIN_FILE = """\
defaults:
  probe-period-seconds: "15"
podOverridable: [inject, probes, supervisor, probe-period-seconds]
"""


@dataclass(frozen=True)
class Row:
    config: str                    # "embedded" or "admin"
    ns: dict[str, str]
    pod: dict[str, str]
    key: str
    container: str | None
    raw: str = ""                  # the winning raw value ...
    level: Level = G               # ... the level that decided it ...
    annotation: str = ""           # ... the annotation it came from ("" for global) ...
    value: Any = None              # ... and its parsed value
    invalid: str | None = None     # instead: InvalidSetting with this message
    ignored: list[Ignored] = field(default_factory=list)


ROWS: dict[str, Row] = {
    # global < namespace < pod < container
    "global default only":
        Row("embedded", {}, {}, "probe-period-seconds", "app", "10", G, "", 10),
    "global default from the admin's file":
        Row("admin", {}, {}, "probe-period-seconds", "app", "15", G, "", 15),
    "optional key unset everywhere":
        Row("embedded", {}, {}, "probe-port", "app", "", G, "", None),
    "namespace over global":
        Row("embedded", {P + "probe-period-seconds": "20"}, {}, "probe-period-seconds", None,
            "20", N, P + "probe-period-seconds", 20),
    "pod over namespace":
        Row("embedded", {P + "supervisor": "enabled"}, {P + "supervisor": "disabled"}, "supervisor", "app",
            "disabled", POD, P + "supervisor", False),
    "pod over global":
        Row("embedded", {}, {P + "supervisor": "enabled"}, "supervisor", None,
            "enabled", POD, P + "supervisor", True),
    "container over pod":
        Row("embedded", {P + "probes": "enabled"}, {P + "probes": "disabled", P + "probes.app": "enabled"},
            "probes", "app", "enabled", C, P + "probes.app", True),
    "container over namespace":
        Row("embedded", {P + "probes": "disabled"}, {P + "probes.app": "enabled"},
            "probes", "app", "enabled", C, P + "probes.app", True),
    "another container's annotation does not apply":
        Row("embedded", {P + "probes": "enabled"}, {P + "probes": "disabled", P + "probes.app": "enabled"},
            "probes", "sidecar", "disabled", POD, P + "probes", False),
    "the pod-level question ignores container annotations":
        Row("embedded", {}, {P + "probes.app": "disabled"}, "probes", None, "enabled", G, "", True),
    "every level set: container wins":
        Row("admin", {P + "probe-period-seconds": "20"},
            {P + "probe-period-seconds": "30", P + "probe-period-seconds.app": "40"},
            "probe-period-seconds", "app", "40", C, P + "probe-period-seconds.app", 40),
    "every level set: pod wins for another container":
        Row("admin", {P + "probe-period-seconds": "20"},
            {P + "probe-period-seconds": "30", P + "probe-period-seconds.app": "40"},
            "probe-period-seconds", "web", "30", POD, P + "probe-period-seconds", 30),
    # podOverridable
    "not podOverridable: pod value ignored, namespace value kept":
        Row("admin", {P + "autorestart": "false"}, {P + "autorestart": "true"}, "autorestart", "app",
            "false", N, P + "autorestart", "false", ignored=[Ignored(P + "autorestart", unknown=False)]),
    "not podOverridable: container value ignored too":
        Row("admin", {}, {P + "autorestart.app": "true"}, "autorestart", "app",
            "unexpected", G, "", "unexpected", ignored=[Ignored(P + "autorestart.app", unknown=False)]),
    "podOverridable in the embedded config, not in the admin's":
        Row("admin", {}, {P + "autorestart": "true"}, "autorestart", "app",
            "unexpected", G, "", "unexpected", ignored=[Ignored(P + "autorestart", unknown=False)]),
    "every key is podOverridable in the embedded config":
        Row("embedded", {P + "autorestart": "false"}, {P + "autorestart": "true"}, "autorestart", "app",
            "true", POD, P + "autorestart", "true"),
    "podOverridable in the admin's config":
        Row("admin", {}, {P + "probe-period-seconds": "30"}, "probe-period-seconds", "app",
            "30", POD, P + "probe-period-seconds", 30),
    # unknown keys, output keys, other prefixes
    "unknown key: Ignored unknown=True":
        Row("embedded", {}, {P + "probe-prot": "8080"}, "probe-port", "app", "", G, "", None,
            ignored=[Ignored(P + "probe-prot", unknown=True)]),
    "unknown key with a container suffix":
        Row("embedded", {}, {P + "supervisr.app": "enabled"}, "supervisor", "app", "disabled", G, "", False,
            ignored=[Ignored(P + "supervisr.app", unknown=True)]),
    "unknown namespace key: silently not a setting":
        Row("embedded", {P + "probe-prot": "8080"}, {}, "probe-port", "app", "", G, "", None),
    "the marker is podmedic's output, not a setting":
        Row("embedded", {}, {P + "status": "{}"}, "supervisor", "app", "disabled", G, "", False),
    "another prefix is not podmedic's":
        Row("embedded", {"example.com/supervisor": "enabled"}, {"example.com/supervisor": "enabled"},
            "supervisor", "app", "disabled", G, "", False),
    # empty values count as unset
    "empty pod value: the namespace decides":
        Row("embedded", {P + "supervisor": "enabled"}, {P + "supervisor": ""}, "supervisor", "app",
            "enabled", N, P + "supervisor", True),
    "empty namespace value: the global default decides":
        Row("embedded", {P + "probe-period-seconds": ""}, {}, "probe-period-seconds", "app", "10", G, "", 10),
    "empty container value: the pod decides":
        Row("embedded", {}, {P + "probes": "disabled", P + "probes.app": ""}, "probes", "app",
            "disabled", POD, P + "probes", False),
    "empty value of a key that is not podOverridable: not even ignored":
        Row("admin", {}, {P + "autorestart": ""}, "autorestart", "app", "unexpected", G, "", "unexpected"),
    "empty value of an unknown key: not even ignored":
        Row("embedded", {}, {P + "probe-prot": ""}, "probe-port", "app", "", G, "", None),
    # invalid values: InvalidSetting names the annotation and the level
    "invalid namespace value":
        Row("embedded", {P + "probe-period-seconds": "0"}, {}, "probe-period-seconds", "app",
            "0", N, P + "probe-period-seconds",
            invalid="podmedic.io/probe-period-seconds='0' is invalid: expected a whole number from 1 to 3600"),
    "invalid pod value":
        Row("embedded", {}, {P + "supervisor": "yes"}, "supervisor", "app", "yes", POD, P + "supervisor",
            invalid="podmedic.io/supervisor='yes' is invalid: expected enabled or disabled"),
    "invalid container value":
        Row("embedded", {}, {P + "probes.app": "on"}, "probes", "app", "on", C, P + "probes.app",
            invalid="podmedic.io/probes.app='on' is invalid: expected enabled or disabled"),
    "invalid namespace value shadowed by a valid pod value":
        Row("embedded", {P + "supervisor": "maybe"}, {P + "supervisor": "enabled"}, "supervisor", "app",
            "enabled", POD, P + "supervisor", True),
    "invalid pod value of a key that is not podOverridable: ignored, not invalid":
        Row("admin", {}, {P + "stopsignal": "TERMINATE"}, "stopsignal", "app", "TERM", G, "", "TERM",
            ignored=[Ignored(P + "stopsignal", unknown=False)]),
    "a long invalid value is shortened in the message":
        Row("embedded", {P + "log-path": "/" + "x" * 100 + "/.."}, {}, "log-path", "app",
            "/" + "x" * 100 + "/..", N, P + "log-path",
            invalid="podmedic.io/log-path='/" + "x" * 60 + "...' is invalid: expected an absolute, normalised "
                    "path without '..', ':' or '$' (e.g. /var/log/app)"),
}


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GlobalConfig]:
    admin = Path(tmp_path_factory.mktemp("config")) / "config.yaml"
    admin.write_text(ADMIN_FILE)
    return {"embedded": load(), "admin": load(admin)}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_precedence(row: Row, configs: dict[str, GlobalConfig]) -> None:
    resolved = Resolved(configs[row.config], row.ns, row.pod)
    setting = resolved.get(row.key, row.container)
    assert (setting.key, setting.raw, setting.level, setting.annotation) == (row.key, row.raw, row.level,
                                                                             row.annotation)
    assert resolved.ignored == row.ignored
    if row.invalid is None:
        assert resolved.value(row.key, row.container) == row.value
        return
    with pytest.raises(InvalidSetting) as raised:
        resolved.value(row.key, row.container)
    assert str(raised.value) == row.invalid
    assert raised.value.level is row.level


def test_the_table_covers_every_level_and_both_kinds_of_ignored() -> None:
    """The table above stays a table of precedence: every level wins somewhere, every level's
    invalid value is rejected somewhere, and both kinds of ignored annotation occur."""
    assert {r.level for r in ROWS.values() if r.invalid is None} == set(Level)
    assert {r.level for r in ROWS.values() if r.invalid is not None} == {N, POD, C}
    assert {i.unknown for r in ROWS.values() for i in r.ignored} == {True, False}


@pytest.mark.parametrize("raw", ["/var/log/$(PODMEDIC_POD_NAME)", "/var/log/$HOME", "//var/log", "//"])
def test_a_mount_path_with_a_dollar_or_a_leading_double_slash_is_invalid(raw: str) -> None:
    """The mountPath keeps `$(VAR)` literally while the kubelet expands it in the toolbox's
    --forensics-out= argument, so bundles would go elsewhere; normpath keeps a leading '//'."""
    with pytest.raises(ValueError):
        parse_mount_path(raw)


def test_a_plain_mount_path_is_kept() -> None:
    assert parse_mount_path("/var/log/app-1_x") == "/var/log/app-1_x"
