"""The served model: a pyfunc wrapper around a fitted scikit-learn Pipeline that takes raw rows.

Rows become what the Pipeline sees through `retrain.features.prepare_features`, the same
function tuning uses before fitting, so training and serving prepare rows identically.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import AnyType

from retrain.data.features import FeatureError, prepare_features, require_features

PIPELINE_ARTIFACT = "pipeline"
PROBABILITIES = "probabilities"
# What the signatures of earlier releases declared per kind (models registered then keep
# theirs). New versions declare every column `Any`: no one MLflow type takes what pandas reads
# for one column across files (int64, nullable Int64, float with NaN, codes as numbers), so
# the wrapper converts and checks each value against its kind instead.
SPEC_TYPES = {
    "numeric": "double",
    "integer": "double",
    "boolean": "double",
    "categorical": "string",
}


class ClassifierModel(mlflow.pyfunc.PythonModel):
    """A fitted Pipeline (preprocessing + classifier) answering raw rows: one label per row,
    or with `params={"probabilities": True}` a frame of `label` and `proba_<class>` columns.
    Logged without the Pipeline, which travels as the joblib artifact `pipeline`."""

    def __init__(self, kinds: Mapping[str, str], pipeline: Any = None) -> None:
        self.kinds = dict(kinds)
        self.pipeline = pipeline

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from retrain.model.instruments import instruments_from_environment

        self.pipeline = joblib.load(context.artifacts[PIPELINE_ARTIFACT])
        self.instruments = instruments_from_environment()  # only in a served process

    @property
    def classes(self) -> np.ndarray:
        return np.asarray(self.pipeline.classes_)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """One probability column per class of `classes`, rows prepared as for fitting."""
        return self.pipeline.predict_proba(prepare_features(frame, self.kinds))

    def predict_labels(self, frame: pd.DataFrame) -> np.ndarray:
        return self.classes[self.predict_proba(frame).argmax(axis=1)]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> Any:
        instruments, started = getattr(self, "instruments", None), time.perf_counter()
        try:
            require_features(model_input, self.kinds)
            proba = self.predict_proba(model_input)
        except FeatureError as err:
            if instruments:
                instruments.failed()
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err
        except Exception as err:  # the model's own failure, not the request's: a 500, which
            if instruments:  # a proxy may retry on another server (a 400 it must not)
                instruments.failed()
            detail = f"the model failed on these rows ({type(err).__name__}: {err})"[:500]
            raise MlflowException(detail, error_code=INTERNAL_ERROR) from err
        labels = self.classes[proba.argmax(axis=1)]
        if instruments:
            instruments.observe(model_input, proba, self.classes, time.perf_counter() - started)
        if not (params or {}).get(PROBABILITIES):
            return labels
        table = pd.DataFrame(proba, columns=[f"proba_{c}" for c in self.classes])
        table.insert(0, "label", labels)
        return table


def label_type(classes: np.ndarray) -> str:
    """The MLflow type of the labels the model answers."""
    kind = np.asarray(classes).dtype.kind
    return {"i": "long", "u": "long", "f": "double", "b": "boolean"}.get(kind, "string")


def build_signature(
    kinds: Mapping[str, str], passengers: Collection[str], classes: np.ndarray
) -> ModelSignature:
    """Raw rows in: every feature column required (a null value is fine where the schema lets
    the feature be missing), and the id and timestamp columns (`passengers`) optional, so a
    client may send them along; all typed `Any`, checked by the wrapper. One boolean param.
    The output schema is the full answer, `label` and a `proba_<class>` per class, so that
    `mlflow.pyfunc.spark_udf` (with the param set) gets its struct type from the signature;
    without the param the model answers the `label` column alone."""
    columns = [ColSpec(AnyType(), name, required=True) for name in kinds]
    columns += [
        ColSpec(AnyType(), name, required=False) for name in passengers if name not in kinds
    ]
    inputs = Schema(columns)
    outputs = Schema(
        [ColSpec(label_type(classes), "label")] + [ColSpec("double", f"proba_{c}") for c in classes]
    )
    params = ParamSchema([ParamSpec(PROBABILITIES, "boolean", False)])
    return ModelSignature(inputs, outputs, params)
