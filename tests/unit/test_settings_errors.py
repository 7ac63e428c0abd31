"""A bad setting is one line in words (setting, value, what is allowed), refused by the CLI
before any flow or Prefect server starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.config.settings import BUNDLED_SCHEMAS, check_schema_file, load_settings, setting_error
from retrain.errors import BadInput

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("RETRAIN_")] + ["MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(
    ("env", "overrides", "expected"),
    [
        ({"RETRAIN_DATASET": "../../etc"}, {}, "bad setting dataset (RETRAIN_DATASET or its "
         "command-line option) '../../etc': use letters, digits and _, starting with a "
         "letter, at most 41 characters"),
        ({"RETRAIN_MAX_REJECT_FRACTION": "1.5"}, {}, "RETRAIN_MAX_REJECT_FRACTION or its "
         "command-line option) '1.5': use a number from 0 to 1"),
        ({"RETRAIN_SERVE_PORT": "abc"}, {}, "'abc': use a whole number from 1 to 65535"),
        ({"RETRAIN_TRIALS": "2.5"}, {}, "RETRAIN_TRIALS or its command-line option) '2.5': "
         "use a whole number of at least 1"),
        ({"RETRAIN_DRIFT_RETRAIN": "maybe"}, {}, "'maybe': use true or false"),
        ({}, {"confidence": 0.4}, "RETRAIN_CONFIDENCE or its command-line option) '0.4': use "
         "a number above 0.5 and below 1"),
        ({}, {"tune_budget": -1}, "RETRAIN_TUNE_BUDGET or its command-line option) '-1': use "
         "a number above 0"),
        ({}, {"objective": "f1"}, "'f1': use auroc or accuracy"),
        ({"RETRAIN_PROXY": "nginx"}, {}, "'nginx': use auto, haproxy or off"),
        ({}, {"family": "xgb"}, "family (RETRAIN_FAMILY or its command-line option) 'xgb': unknown "
         "families ['xgb']"),
        ({"RETRAIN_TIMEZONE": "Mars/Base"}, {}, "RETRAIN_TIMEZONE or its command-line option) "
         "'Mars/Base': not an IANA time zone"),
        ({"RETRAIN_TIMEZONE": "../etc"}, {}, "'../etc': not an IANA time zone"),
        ({}, {"mlflow_tracking_uri": 3}, "bad setting MLFLOW_TRACKING_URI '3': use text"),
    ],
)  # fmt: skip
def test_a_bad_setting_reads_in_words(
    monkeypatch: pytest.MonkeyPatch, env: dict, overrides: dict, expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(BadInput) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and "pattern" not in message and "Input should" not in message
    assert caught.value.exit_code == 2


def test_several_bad_settings_name_the_first_and_count_the_rest() -> None:
    with pytest.raises(BadInput, match=r"'0': use a whole number of at least 1 \(and 1 more"):
        load_settings(trials=0, objective="f1")


def test_an_error_kind_without_words_keeps_pydantic_message() -> None:
    error = {"type": "url_parsing", "loc": ("alert_url",), "msg": "Input should be a URL",
             "input": "x" * 100}  # fmt: skip
    assert setting_error(error) == (  # type: ignore[arg-type]
        f"bad setting alert_url (RETRAIN_ALERT_URL or its command-line option) '{'x' * 77}...': "
        "input should be a URL"
    )


def test_the_schema_file_must_parse(tmp_path: Path) -> None:
    check_schema_file(BUNDLED_SCHEMAS / "iris.yaml")
    with pytest.raises(BadInput, match=r"cannot read schema .*missing\.yaml .*RETRAIN_SCHEMA"):
        check_schema_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns: [oops\n")
    with pytest.raises(BadInput, match=r"schema .*broken\.yaml is not YAML .*RETRAIN_SCHEMA"):
        check_schema_file(broken)
    broken.write_text("- a list\n")
    with pytest.raises(BadInput, match=r"broken\.yaml is not a pandera YAML schema"):
        check_schema_file(broken)


def run_cli(tmp_path: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """The console script in a fresh process; a flow started by mistake would try a closed
    port for its Prefect API and say so."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_", "PREFECT_"))}
    base.pop("MLFLOW_TRACKING_URI", None)
    base |= {"RETRAIN_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect"),
             "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # fmt: skip
    command = [sys.executable, "-m", "cli", *args]
    return subprocess.run(
        command, cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["ingest"], {"RETRAIN_DATASET": "../../etc"}, ["'../../etc'", "letters, digits and _"]),
        (["clean"], {"RETRAIN_MAX_REJECT_FRACTION": "1.5"}, ["'1.5'", "from 0 to 1"]),
        (["deploy"], {"RETRAIN_SERVE_PORT": "abc"}, ["RETRAIN_SERVE_PORT", "'abc'"]),
        (["tune"], {"RETRAIN_SCHEMA": "{broken}"}, ["broken.yaml is not YAML", "RETRAIN_SCHEMA"]),
        (["tune", "--objective", "f1"], {}, ["bad setting objective", "'f1'", "auroc or accuracy"]),
    ],
)
def test_a_stage_command_refuses_a_bad_setting_before_anything_starts(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: list[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns: [oops\n")
    env = {k: v.format(broken=broken) for k, v in env.items()}
    done = run_cli(tmp_path, args, env)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("retrain: "), done.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert "prefect" not in done.stderr.lower() and "Traceback" not in done.stderr
    assert done.stdout == ""
