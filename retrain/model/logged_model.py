"""The served model as MLflow keeps it: a fitted Pipeline logged under a run as the pyfunc
wrapper, and a registered version loaded back in this process (through the MLflow adapter)."""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from retrain.io import tracking
from retrain.io.tracking import LoggedModel
from retrain.model.pyfunc_model import PIPELINE_ARTIFACT, ClassifierModel, build_signature

JUDGED_ARTIFACT = "judged_pipeline"  # the Pipeline before a refit on the holdout rows
JUDGED_FILE = "judged.joblib"


def log_model(
    tracking_uri: str,
    run_id: str,
    pipeline: Any,
    example: pd.DataFrame,
    kinds: dict[str, str],
    passengers: Collection[str],
    judged: Any = None,
) -> LoggedModel:
    """Log the fitted Pipeline under `run_id` as the served pyfunc model: raw rows in (every
    feature required; the id and timestamp columns, `passengers`, optional), labels out,
    probabilities on request. `judged`: the Pipeline the holdout judged, when the served one
    was refit on the holdout rows too; kept beside it (never served) so a promotion judges
    the version by the model that did not see the holdout."""
    import joblib

    signature = build_signature(kinds, passengers, pipeline.classes_)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.joblib"
        joblib.dump(pipeline, path)
        artifacts = {PIPELINE_ARTIFACT: str(path)}
        if judged is not None:
            joblib.dump(judged, Path(tmp) / JUDGED_FILE)
            artifacts[JUDGED_ARTIFACT] = str(Path(tmp) / JUDGED_FILE)
        requirements = tracking.pip_requirements(pipeline)
        return tracking.log_pyfunc(
            tracking_uri, run_id, ClassifierModel(kinds), artifacts, signature, example,
            requirements,
        )  # fmt: skip


def load_local(local: str) -> ClassifierModel:
    """A downloaded model folder as the wrapper. A version of the older sklearn flavor (numeric
    features only) is wrapped too, its features read from the fitted model, so every version
    is scored through the same `predict_proba`."""
    if "sklearn" not in tracking.model_flavors(local):
        return tracking.load_python_model(local)
    estimator = tracking.load_sklearn(local)
    kinds = {str(name): "numeric" for name in estimator.feature_names_in_}
    return ClassifierModel(kinds, estimator)


def load_version(
    tracking_uri: str, model_name: str, version: str, judged: bool = False
) -> ClassifierModel:
    """The registered version loaded in this process (`.pipeline`, `.classes`,
    `.predict_proba(frame)` on raw rows); `judged`: with the Pipeline its holdout judged, when
    the served one was refit on the holdout rows too."""
    import joblib

    with tempfile.TemporaryDirectory() as tmp:
        local = tracking.download_version(tracking_uri, model_name, version, tmp)
        model = load_local(local)
        found = sorted(Path(local).rglob(JUDGED_FILE)) if judged else []
        if found:
            model.pipeline = joblib.load(found[0])
        return model


def load_version_and_example(
    tracking_uri: str, model_name: str, version: str
) -> tuple[ClassifierModel, pd.DataFrame]:
    """The version loaded in this process and the input example logged with it (one download)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = tracking.download_version(tracking_uri, model_name, version, tmp)
        return load_local(local), tracking.load_input_example(local)
