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


@pytest.mark.parametrize("argv, variable, value, message", [
    (["certs", "--help"], "PODMEDIC_WORKERS", "abc", None),  # serve's variable does not concern certs
    (["serve"], "PODMEDIC_WORKERS", "abc", "argument --workers: 'abc': expected a whole number of 1 or more "
                                           "(from the flag or PODMEDIC_WORKERS)"),
    (["serve", "--workers", "0"], None, None, "argument --workers: '0': expected a whole number of 1 or more"),
    (["serve", "--workers", "-1"], None, None, "argument --workers: '-1'"),
    (["serve", "--bind", "127.0.0.1:99999"], None, None, "argument --bind: '127.0.0.1:99999': expected HOST:PORT"),
    (["serve", "--handshake-timeout", "0"], None, None, "argument --handshake-timeout: '0': expected a positive"),
    (["quarantine", "--metrics-bind", "abc"], None, None, "argument --metrics-bind: 'abc': expected HOST:PORT"),
    (["quarantine"], "PODMEDIC_QUARANTINE_INTERVAL", "nan", "PODMEDIC_QUARANTINE_INTERVAL"),
    (["certs", "init", "--days", "-5"], None, None, "argument --days: '-5': expected a whole number from 1 to"),
    (["certs", "init", "--days", "0"], None, None, "argument --days: '0'"),  # would be expired when issued
    (["certs", "init", "--days", "99999999"], None, None, "argument --days: '99999999'"),
    (["certs", "install", "--webhook", "w", "--secret", "ns/s", "--ca-days", "0"], None, None, "argument --ca-days: '0'"),
])
def test_bad_numbers_and_addresses_are_one_line_usage_errors(monkeypatch, capsys, argv, variable, value, message):
    if variable:
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    if message is None:
        assert exit.value.code == 0
    else:
        assert exit.value.code == 2 and message in err and "Traceback" not in err
