"""The boolean environment equivalents of flags (webhook/cli/env.py): `0` and `false` mean off,
a value that is neither stops the command with its name instead of guessing."""

from __future__ import annotations

import pytest

from webhook.cli import main
from webhook.cli.env import env_flag


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("True", True), ("0", False),
                                           ("false", False), ("FALSE", False), ("", False)])
def test_a_flag_variable_is_true_false_1_or_0(monkeypatch, raw, expected):
    monkeypatch.setenv("PODMEDIC_TEST_FLAG", raw)
    assert env_flag("PODMEDIC_TEST_FLAG") is expected


def test_an_unset_flag_variable_is_false(monkeypatch):
    monkeypatch.delenv("PODMEDIC_TEST_FLAG", raising=False)
    assert env_flag("PODMEDIC_TEST_FLAG") is False


@pytest.mark.parametrize("command, variable", [(["quarantine"], "PODMEDIC_QUARANTINE_DRY_RUN"),
                                               (["serve"], "PODMEDIC_REUSE_PORT")])
def test_any_other_value_stops_the_command_and_names_the_variable(monkeypatch, capsys, command, variable):
    monkeypatch.setenv(variable, "yes please")
    assert main(command) == 1
    out = capsys.readouterr()
    assert f"{variable}='yes please': expected true, false, 1 or 0" in out.out + out.err
