"""A champion registered by retrain 0.1.0 (the flat layout, whose pickles name
`retrain.pyfunc.ClassifierModel`) still loads in this process and is served from the registry
by a real `mlflow models serve` (as `retrain serve start` serves it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import retrain.pyfunc
from retrain.config.settings import load_settings
from retrain.io import tracking
from retrain.model import logged_model
from retrain.model.pyfunc_model import ClassifierModel
from retrain.serving import deploy, model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OLD_MODEL = Path(__file__).parents[1] / "fixtures" / "model_0_1_0_hgb"
# the fixture learnt "yes" when size + (colour is red) > 0.5
CLEAR_ROWS = pd.DataFrame(
    {"size": [3.0, -3.0, 2.5], "count": [1, 2, None], "member": [True, False, None],
     "colour": ["red", "blue", "green"], "user_id": [7, 8, 9]}
)  # fmt: skip


def test_the_old_pickle_names_the_forwarding_module() -> None:
    assert b"retrain.pyfunc" in (OLD_MODEL / "python_model.pkl").read_bytes()
    assert retrain.pyfunc.ClassifierModel is ClassifierModel


def test_an_old_model_loads_in_process() -> None:
    model = logged_model.load_local(str(OLD_MODEL))
    assert isinstance(model, ClassifierModel)
    assert list(model.predict_labels(CLEAR_ROWS)) == ["yes", "no", "yes"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_old_champion_is_served_and_answers(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_PROXY", "off")
    settings = load_settings()
    client = tracking.make_client(settings.tracking_uri)
    source = shutil.copytree(OLD_MODEL, tmp_path / "registered" / "model")
    client.create_registered_model(settings.model_name)
    version = str(client.create_model_version(settings.model_name, str(source)).version)
    client.set_registered_model_alias(settings.model_name, "champion", version)
    started = deploy.serve_start(settings, version, settings.health_timeout, supervised=False)
    served = model_server.read_state(settings.home)
    assert served.pid == started.pid and served.version == version
    assert list(model_server.invoke(served.public_url, CLEAR_ROWS)) == ["yes", "no", "yes"]
