"""The served wrapper and its row preparation on tiny frames: real Pipelines, no mocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from retrain.data.features import FeatureError
from retrain.model.pyfunc_model import ClassifierModel, build_signature, prepare_features

KINDS = {"size": "numeric", "count": "integer", "member": "boolean", "colour": "categorical"}


def raw_rows() -> pd.DataFrame:
    """Rows as a client sends them: strings, None for missing, an id and the target beside."""
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "colour": ["red", None, "blue", "NA"],
            "member": [True, None, False, "true"],
            "count": [3, None, 5, "7"],
            "size": [1.5, np.nan, "2.5", ""],
            "target": ["a", "b", "a", "b"],
        }
    )


def test_prepare_features_types_each_kind_and_keeps_missing_as_nan() -> None:
    prepared = prepare_features(raw_rows(), KINDS)
    assert list(prepared.columns) == list(KINDS)
    assert prepared.dtypes.to_dict() == {
        "size": np.float64, "count": np.float64, "member": np.float64, "colour": object,
    }  # fmt: skip
    assert prepared["colour"].tolist()[0::2] == ["red", "blue"]
    assert prepared["colour"].isna().tolist() == [False, True, False, True]
    assert prepared["member"].tolist()[0::2] == [1.0, 0.0] and prepared["member"][3] == 1.0
    assert prepared["count"].tolist()[0::2] == [3.0, 5.0] and prepared["count"][3] == 7.0
    assert prepared[["size", "count", "member"]].isna().sum().tolist() == [2, 1, 1]


def test_prepare_features_takes_typed_cleaned_rows_and_absent_optional_columns() -> None:
    cleaned = pd.DataFrame(
        {
            "size": [1.0, None],
            "count": pd.array([2, None], dtype="Int64"),
            "member": [1, 0],
            "colour": pd.array(["x", None], dtype="string"),
        }
    )
    prepared = prepare_features(cleaned, KINDS)
    assert prepared["count"].tolist()[0] == 2.0 and np.isnan(prepared["count"][1])
    assert prepared["member"].tolist() == [1.0, 0.0]
    assert prepared["colour"].dtype == object and prepared["colour"].isna().tolist() == [
        False,
        True,
    ]
    absent = prepare_features(cleaned.drop(columns=["colour", "member"]), KINDS)
    assert absent["colour"].isna().all() and absent["member"].isna().all()


def test_prepare_features_refuses_values_that_are_not_their_kind_naming_column_and_value() -> None:
    with pytest.raises(FeatureError, match="'member': value 'maybe' \\(row 1\\)"):
        prepare_features(pd.DataFrame({"member": [True, "maybe"]}), {"member": "boolean"})
    with pytest.raises(FeatureError, match="'size': value 'big'"):
        prepare_features(pd.DataFrame({"size": ["1.5", "big"]}), {"size": "numeric"})
    with pytest.raises(FeatureError, match=r"'count': value 2.5 .* not a whole number"):
        prepare_features(pd.DataFrame({"count": [1.0, 2.5]}), {"count": "integer"})
    with pytest.raises(FeatureError, match="'member': value 2 "):
        prepare_features(pd.DataFrame({"member": [1, 2]}), {"member": "boolean"})


def test_prepare_features_takes_each_way_pandas_reads_a_column() -> None:
    """int64, nullable Int64, float with NaN and booleans: one prepared value per kind."""
    frames = [
        pd.DataFrame({"size": [3, 1], "count": [4, 0], "member": [1, 0], "colour": [1, 2]}),
        pd.DataFrame(
            {
                "size": pd.array([3, 1], dtype="Int64"),
                "count": pd.array([4, 0], dtype="Int64"),
                "member": [True, False],
                "colour": pd.array([1, 2], dtype="Int64"),
            }
        ),
        pd.DataFrame(
            {"size": [3.0, 1.0], "count": [4.0, 0.0], "member": [1.0, 0.0], "colour": [1.0, 2.0]}
        ),
    ]
    for frame in frames:
        prepared = prepare_features(frame, KINDS)
        assert prepared.to_dict("list") == {
            "size": [3.0, 1.0], "count": [4.0, 0.0], "member": [1.0, 0.0], "colour": ["1", "2"],
        }  # fmt: skip
    gaps = pd.DataFrame(
        {"size": [np.nan, 1.0], "count": pd.array([None, 0], dtype="Int64"),
         "member": [None, True], "colour": [np.nan, 2.0]}
    )  # fmt: skip
    prepared = prepare_features(gaps, KINDS)
    assert prepared.iloc[0].isna().all() and prepared.iloc[1].tolist() == [1.0, 0.0, 1.0, "2"]


def test_the_wrapper_refuses_rows_that_lack_a_feature_column_and_names_them() -> None:
    from mlflow.exceptions import MlflowException

    model = fitted_model(["no", "yes"])
    with pytest.raises(MlflowException, match=r"\['count', 'colour'\]") as caught:
        model.predict(None, raw_rows().drop(columns=["count", "colour"]))
    assert caught.value.get_http_status_code() == 400
    with pytest.raises(MlflowException, match="'size'") as caught:
        model.predict(None, raw_rows().assign(size="big"))
    assert caught.value.get_http_status_code() == 400


def test_a_model_that_fails_on_valid_rows_answers_500_and_bad_rows_still_400() -> None:
    """A Pipeline fitted on one more column than the wrapper prepares fails inside the model
    on rows that are fine: a server error (HAProxy may retry it elsewhere), never a 400."""
    from mlflow.exceptions import MlflowException

    broken = fitted_model(["no", "yes"]).pipeline
    extra = prepare_features(raw_rows(), KINDS).assign(spare=1.0)
    broken.fit(pd.concat([extra] * 10, ignore_index=True), ["no", "yes"] * 20)
    model = ClassifierModel(KINDS, broken)
    with pytest.raises(MlflowException, match="the model failed on these rows") as caught:
        model.predict(None, raw_rows())
    assert caught.value.get_http_status_code() == 500
    with pytest.raises(MlflowException) as caught:
        model.predict(None, raw_rows().drop(columns=["count"]))
    assert caught.value.get_http_status_code() == 400


def fitted_model(labels: list) -> ClassifierModel:
    """A tiny Pipeline fitted on prepared rows: categories ordinal-encoded (unseen and missing
    become NaN), gradient boosting that takes NaN."""
    rng = np.random.default_rng(0)
    rows = 40
    train = pd.DataFrame(
        {
            "size": rng.normal(size=rows),
            "count": rng.integers(0, 9, rows),
            "member": rng.integers(0, 2, rows).astype(bool),
            "colour": rng.choice(["red", "blue", "green"], rows),
        }
    )
    y = np.array(labels)[np.arange(rows) % len(labels)]
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    prep = ColumnTransformer([("cat", encoder, ["colour"])], remainder="passthrough")
    pipeline = Pipeline([("prep", prep), ("clf", HistGradientBoostingClassifier(max_iter=5))])
    pipeline.fit(prepare_features(train, KINDS), y)
    return ClassifierModel(KINDS, pipeline)


@pytest.mark.parametrize("labels", [["no", "yes"], [0, 1, 2]])
def test_wrapper_answers_one_label_per_raw_row(labels: list) -> None:
    model = fitted_model(labels)
    answers = model.predict(None, raw_rows())
    assert len(answers) == 4 and set(answers.tolist()) <= set(labels)
    assert answers.dtype.kind == np.asarray(labels).dtype.kind
    assert model.predict(None, raw_rows(), params={"probabilities": False}).tolist() == list(
        answers
    )


@pytest.mark.parametrize("labels", [["no", "yes"], [0, 1, 2]])
def test_wrapper_gives_label_and_one_probability_per_class_when_asked(labels: list) -> None:
    model = fitted_model(labels)
    table = model.predict(None, raw_rows(), params={"probabilities": True})
    assert list(table.columns) == ["label", *(f"proba_{c}" for c in labels)]
    proba = table.drop(columns="label").to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert table["label"].tolist() == np.asarray(labels)[proba.argmax(axis=1)].tolist()
    assert np.allclose(model.predict_proba(raw_rows()), proba)


def test_unseen_category_and_extra_columns_still_get_a_prediction() -> None:
    model = fitted_model(["no", "yes"])
    row = pd.DataFrame(
        {"colour": ["violet"], "size": [0.1], "count": [2], "member": [None], "note": ["x"]}
    )
    assert model.predict(None, row).tolist()[0] in ("no", "yes")
    shuffled = raw_rows()[["target", "size", "colour", "id", "member", "count"]]
    assert model.predict_labels(shuffled).tolist() == model.predict_labels(raw_rows()).tolist()


def test_signature_requires_every_feature_lets_ids_ride_along_and_types_the_labels() -> None:
    signature = build_signature(KINDS, ("id", "seen_at"), np.array([0, 1]))
    inputs = {spec.name: (repr(spec.type), spec.required) for spec in signature.inputs.inputs}
    assert inputs == {
        "size": ("Any", True), "count": ("Any", True), "member": ("Any", True),
        "colour": ("Any", True), "id": ("Any", False), "seen_at": ("Any", False),
    }  # fmt: skip
    assert signature.outputs.inputs[0].type.name == "long"
    assert signature.params.params[0].name == "probabilities"
    outputs = [(spec.name, spec.type.name) for spec in signature.outputs.inputs]
    assert outputs == [("label", "long"), ("proba_0", "double"), ("proba_1", "double")]
    assert build_signature(KINDS, set(), np.array(["a", "b"])).outputs.inputs[0].type.name == (
        "string"
    )


def test_the_probability_answer_has_the_columns_the_signature_declares() -> None:
    model = fitted_model(["no", "yes", "maybe"])
    table = model.predict(None, raw_rows(), {"probabilities": True})
    signature = build_signature(KINDS, set(), model.classes)
    assert list(table.columns) == signature.outputs.input_names()


def test_a_version_logged_with_the_earlier_typed_signature_still_loads_and_answers(
    tmp_path,
) -> None:
    """Upgrades are safe: a model saved as earlier releases saved it (typed `double` /
    `string` columns, nullable ones optional) loads with this wrapper and answers as before."""
    import joblib
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from retrain.model.pyfunc_model import PIPELINE_ARTIFACT, SPEC_TYPES

    model = fitted_model(["no", "yes"])
    typed = Schema(
        [ColSpec(SPEC_TYPES[kind], name, required=name in ("size", "count"))
         for name, kind in KINDS.items()]
    )  # fmt: skip
    joblib.dump(model.pipeline, tmp_path / "pipeline.joblib")
    mlflow.pyfunc.save_model(
        tmp_path / "model", python_model=ClassifierModel(KINDS),
        artifacts={PIPELINE_ARTIFACT: str(tmp_path / "pipeline.joblib")},
        signature=ModelSignature(typed), pip_requirements=["scikit-learn"],
    )  # fmt: skip
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    rows = pd.DataFrame(
        {"size": [1.5, 0.2], "count": [3.0, np.nan], "member": [1.0, np.nan],
         "colour": ["red", None]}
    )  # fmt: skip
    assert loaded.predict(rows).tolist() == model.predict_labels(rows).tolist()
