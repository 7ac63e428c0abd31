"""Bring your own table, end to end: `retrain schema infer` on palmerpenguins (categoricals and
missing values), the nightly flow on a real Prefect server, and the served model answering raw
rows with a null and an unseen category. On SQLite only: the data-path tests run the same
stages on MariaDB, and a second end-to-end run would cost the suite another half minute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from retrain.config.settings import load_settings
from retrain.serving import model_server
from tests.integration.helpers import count
from tests.support.services import post_invocations

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RETRAIN = str(Path(sys.executable).parent / "retrain")


def penguins_csv(folder: Path) -> Path:
    """palmerpenguins as a user's CSV export, and a second night's export beside it holding a
    row whose body mass is not a number and one with a missing sex."""
    from palmerpenguins import load_penguins

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "penguins.csv"
    text = load_penguins().to_csv(index=False, lineterminator="\n")
    path.write_text(text, encoding="utf-8")
    header = text.splitlines()[0]
    night2 = [
        "Adelie,Dream,39.0,18.0,190,heavy,male,2008",
        "Gentoo,Biscoe,47.1,14.5,215,5100,,2009",
        *(f"Chinstrap,Dream,{46 + i / 10},17.9,195,3700,female,2009" for i in range(8)),
    ]
    (folder / "penguins-2.csv").write_text("\n".join([header, *night2]) + "\n", encoding="utf-8")
    return path


def infer_schema(source: Path, output: Path) -> None:
    done = subprocess.run(
        [RETRAIN, "schema", "infer", "--source", str(source), "--target", "species",
         "--output", str(output)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


RAW_ROWS = {
    "columns": ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                "body_mass_g", "sex", "year"],
    "data": [["Atlantis", None, 18.0, 190, 3700, None, 2007],
             ["Biscoe", 47.5, 15.0, 220, 5400, "male", 2009]],
}  # fmt: skip


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # MariaDB: the data-path tests
def test_a_csv_of_your_own_becomes_a_served_model(
    prefect_api: str, env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.retrain import retrain

    source = penguins_csv(tmp_path / "data")
    schema = tmp_path / "penguins.yaml"
    infer_schema(source, schema)
    monkeypatch.setenv("RETRAIN_SCHEMA", str(schema))
    monkeypatch.setenv("RETRAIN_SOURCE", str(source.parent))
    summary = retrain(trials=3, family="hgb,random_forest")
    dataset = env["RETRAIN_DATASET"]
    assert count(f"{dataset}_raw") == 354
    assert count(f"{dataset}_rejected", "WHERE reason LIKE '%body_mass_g: not a number%'") == 1
    assert count(f"{dataset}_cleaned", "WHERE sex IS NULL") == 12
    assert summary.promotion.promoted and summary.deployed is not None
    assert summary.tuned.test_auroc > 0.95
    settings = load_settings()
    assert settings.model_name == f"{dataset}_model"
    served = model_server.read_state(settings.home)
    assert served is not None and served.version == summary.tuned.version
    labels = post_invocations(served.url, {"dataframe_split": RAW_ROWS})
    assert len(labels) == 2 and set(labels) <= {"Adelie", "Chinstrap", "Gentoo"}
    rows = post_invocations(
        served.url, {"dataframe_split": RAW_ROWS, "params": {"probabilities": True}}
    )
    assert [r["label"] for r in rows] == labels
    assert all(
        abs(sum(r[f"proba_{c}"] for c in ("Adelie", "Chinstrap", "Gentoo")) - 1) < 1e-9
        for r in rows
    )
