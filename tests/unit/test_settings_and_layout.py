"""Settings come from the environment (the layering rules are tests/unit/test_layering.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrain.config.settings import export_tool_variables, load_settings
from retrain.errors import BadInput

ROOT = Path(__file__).parents[2]


def test_defaults_are_embedded_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("RETRAIN_DB_URL", "MLFLOW_TRACKING_URI", "RETRAIN_DATASET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "h"))
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'h' / 'warehouse.db'}"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert (settings.dataset, settings.model_name, settings.serve_port) == (
        "iris",
        "iris_model",
        1234,
    )


def test_environment_and_explicit_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRAIN_MAX_REJECT_FRACTION", "0.35")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert load_settings().max_reject_fraction == 0.35
    assert load_settings(max_reject_fraction=0.5).max_reject_fraction == 0.5
    assert load_settings(max_reject_fraction=None).max_reject_fraction == 0.35
    assert load_settings().tracking_uri == "http://127.0.0.1:5000"


def test_the_settings_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "retrain.env").write_text(
        "RETRAIN_TRIALS=7\nRETRAIN_SERVE_PORT=2345\nMLFLOW_TRACKING_URI=http://mlflow:5000\n"
        "SOMETHING_ELSE=1\n"
    )
    monkeypatch.setenv("RETRAIN_HOME", str(home))
    monkeypatch.setenv("RETRAIN_SERVE_PORT", "3456")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = load_settings()
    assert (settings.trials, settings.serve_port) == (7, 3456)
    assert settings.tracking_uri == "http://mlflow:5000"
    assert load_settings(trials=3).trials == 3
    other = tmp_path / "other.env"
    other.write_text("RETRAIN_TRIALS=9\n")
    monkeypatch.setenv("RETRAIN_ENV_FILE", str(other))
    assert load_settings().trials == 9
    monkeypatch.setenv("RETRAIN_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(BadInput, match=r"RETRAIN_ENV_FILE names .*missing\.env"):
        load_settings()


def test_the_settings_file_exports_only_the_tools_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Prefect reads PREFECT_API_AUTH_STRING at import and MLflow its credentials from the
    environment, so those lines of the file become variables; the environment still wins."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "retrain.env").write_text(
        "PREFECT_API_AUTH_STRING=admin:from-file\nMLFLOW_TRACKING_PASSWORD='p w#1'\n"
        "AWS_ACCESS_KEY_ID=key\nPREFECT_API_URL=http://file:4200/api\n"
        "RETRAIN_TRIALS=7\nSOMETHING_ELSE=1\n"
    )
    monkeypatch.setenv("RETRAIN_HOME", str(home))
    monkeypatch.setenv("PREFECT_API_URL", "http://env:4200/api")
    for name in ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID",
                 "RETRAIN_TRIALS", "SOMETHING_ELSE"):  # fmt: skip
        monkeypatch.setenv(name, "")  # recorded, so what the test exports is undone after it
        monkeypatch.delenv(name)
    exported = export_tool_variables()
    assert sorted(exported) == [
        "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING",
    ]  # fmt: skip
    assert os.environ["PREFECT_API_AUTH_STRING"] == "admin:from-file"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p w#1"
    assert os.environ["PREFECT_API_URL"] == "http://env:4200/api"
    assert "RETRAIN_TRIALS" not in os.environ and "SOMETHING_ELSE" not in os.environ
    assert export_tool_variables() == []  # a second call finds them set


def test_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRAIN_DATASET", "iris; drop table")
    with pytest.raises(
        BadInput, match=r"bad setting dataset \(RETRAIN_DATASET.*'iris; drop table'"
    ):
        load_settings()


def test_using_an_mlflow_store_does_not_change_the_settings_of_the_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    from retrain.config.settings import load_settings
    from retrain.io import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path))
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with tracking.fluent_store(f"sqlite:///{tmp_path / 'elsewhere.db'}"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert load_settings().tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
