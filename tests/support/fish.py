"""A small fish classifier of mixed kinds with nulls, logged and registered through
`retrain.tracking` on a SQLite store: the model the serving tests serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from retrain.io import tracking
from retrain.model import logged_model
from retrain.model.pyfunc_model import prepare_features

KINDS = {"size": "numeric", "count": "integer", "member": "boolean", "colour": "categorical"}
NULLABLE = {"count", "member", "colour"}
PASSENGERS = ("id",)  # an id column a client may send along
LABELS = ["bream", "perch", "pike"]
MODEL = "fish_model"


def training_rows(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """Mixed kinds with nulls; `member` tells the classes apart (missing for perch)."""
    rng = np.random.default_rng(1)
    y = np.array(LABELS)[np.arange(rows) % 3]
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=rows) + np.arange(rows) % 3,
            "count": pd.array(rng.integers(0, 9, rows), dtype="Int64"),
            "member": pd.Series([False, None, True] * (rows // 3), dtype=object),
            "colour": rng.choice(["red", "blue", "green"], rows),
        }
    )
    frame.loc[::7, "colour"] = None
    frame.loc[::5, "count"] = pd.NA
    return frame, y


def fitted_pipeline() -> Pipeline:
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    prep = ColumnTransformer([("cat", encoder, ["colour"])], remainder="passthrough")
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    pipeline = Pipeline([("prep", prep), ("clf", model)])
    frame, y = training_rows()
    return pipeline.fit(prepare_features(frame, KINDS), y)


def strict_pipeline() -> Pipeline:
    """The same model with an encoder that refuses a colour it never saw: a real model that
    fails (a server error) on such rows and answers the others."""
    prep = ColumnTransformer([("cat", OrdinalEncoder(), ["colour"])], remainder="passthrough")
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    frame, y = training_rows()
    return Pipeline([("prep", prep), ("clf", model)]).fit(prepare_features(frame, KINDS), y)


def known_rows() -> pd.DataFrame:
    """Raw rows whose colours every version has seen."""
    return raw_rows().assign(colour=["red", None, "blue"])


def raw_rows() -> pd.DataFrame:
    """Rows as the source has them: a null in each nullable feature, an unseen category."""
    return pd.DataFrame(
        {
            "size": [0.2, 1.1, 2.3],
            "count": [None, 4, 2],
            "member": [True, None, False],
            "colour": ["red", None, "violet"],
        }
    )


def store_uris(folder: Path) -> tuple[str, str]:
    """A SQLite tracking store and its artifact root, both under `folder` (without a root the
    artifacts would land in ./mlruns of the working directory)."""
    return f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts")


def log_and_register(
    folder: Path, artifact_root: str | None = None, strict: bool = False
) -> tuple[str, str]:
    """(tracking URI, registered version) of a model logged through logged_model.log_model,
    its artifacts under `artifact_root` (default: a folder beside the store); `strict`: the
    version that fails on an unseen colour."""
    tracking_uri, local_root = store_uris(folder)
    artifact_root = artifact_root or local_root
    client = tracking.make_client(tracking_uri)
    experiment = tracking.ensure_experiment(client, "fish", artifact_root)
    run = tracking.start_parent_run(client, experiment, "tune", {"retrain.stage": "tune"})
    pipeline, example = (
        (strict_pipeline(), known_rows()) if strict else (fitted_pipeline(), raw_rows())
    )
    logged = logged_model.log_model(tracking_uri, run, pipeline, example, KINDS, PASSENGERS)
    return tracking_uri, tracking.register_version(client, MODEL, logged, {})
