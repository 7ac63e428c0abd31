"""Schema files: inference round trip, roles, overrides, and the names that follow the dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrain.bundled import source_files
from retrain.errors import BadInput
from retrain.schema import (
    DatasetSchema,
    InferRequest,
    dataset_name,
    infer_from_csv,
    load_dataset_schema,
)
from retrain.settings import BUNDLED_SCHEMAS, load_settings
from retrain.validation import split_clean_rejected

CSV = """customer id,signed_up,age,income,student,plan,churned
c1,2026-01-03,34,52000.5,True,basic,no
c2,2026-01-04,,48000,False,,yes
c3,2026-01-05,51,,True,premium,no
c4,2026-01-06,29,39000,,basic,yes
c5,2026-01-07,45,61000,False,premium,maybe
"""


@pytest.fixture
def customers(tmp_path: Path) -> Path:
    path = tmp_path / "my-customers.csv"
    path.write_text(CSV)
    return path


def infer(path: Path, tmp_path: Path, **options) -> Path:
    request = InferRequest(
        target="churned", ids=("customer id",), timestamps=("signed_up",), **options
    )
    out = tmp_path / "schema.yaml"
    out.write_text(infer_from_csv(path, request))
    return out


def schema_from(tmp_path: Path, text: str, request: InferRequest) -> tuple[Path, DatasetSchema]:
    """A CSV file of `text`, its inferred schema file, and that schema loaded."""
    path = tmp_path / "source.csv"
    path.write_text(text)
    out = tmp_path / "inferred.yaml"
    out.write_text(infer_from_csv(path, request))
    return out, load_dataset_schema(out)


def as_raw(text: pd.DataFrame) -> pd.DataFrame:
    """Text rows with the bookkeeping columns ingest adds."""
    raw = text.astype(object).copy()
    raw["batch_id"], raw["line_no"] = "b", range(2, 2 + len(raw))
    raw["row_hash"] = raw["line_no"].astype(str)
    raw["n_fields"], raw["extra_fields"] = len(text.columns), ""
    return raw


def test_an_inferred_schema_round_trips_with_its_roles(customers: Path, tmp_path: Path) -> None:
    schema = load_dataset_schema(infer(customers, tmp_path, positive_class="yes"))
    assert schema.name == "my_customers"
    assert schema.target == "churned" and schema.roles.positive_class == "yes"
    assert schema.features == ["age", "income", "student", "plan"]
    assert schema.feature_kinds == {
        "age": "numeric",  # an integer column with a gap reads as float
        "income": "numeric",
        "student": "categorical",  # True/False with a gap is text to pandas
        "plan": "categorical",
    }
    assert schema.nullable_features == {"age", "income", "student", "plan"}
    assert not schema.nullable("churned")
    document = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    assert document["columns"]["churned"]["isin"] == ["maybe", "no", "yes"]
    assert "isin" not in document["columns"]["plan"]
    assert not any(k.startswith(("greater", "less")) for k in document["columns"]["income"])


def test_required_and_bounds_are_written_only_when_asked(customers: Path, tmp_path: Path) -> None:
    path = infer(customers, tmp_path, required=("income",), with_bounds=True)
    document = yaml.safe_load(path.read_text())
    assert document["columns"]["income"]["nullable"] is False
    assert document["columns"]["income"]["greater_than_or_equal_to"] == 39000.0
    assert not load_dataset_schema(path).nullable("income")


def test_an_inferred_schema_cleans_the_file_it_came_from(customers: Path, tmp_path: Path) -> None:
    schema = load_dataset_schema(infer(customers, tmp_path))
    raw = as_raw(pd.read_csv(customers, dtype=str, keep_default_na=False))
    split = split_clean_rejected(raw, schema, None)
    assert len(split.cleaned) == 5 and split.rejected.empty
    assert split.cleaned["age"].isna().sum() == 1 and split.cleaned["plan"].isna().sum() == 1
    assert split.cleaned["customer id"].tolist() == ["c1", "c2", "c3", "c4", "c5"]


def test_integer_labels_stay_integers(tmp_path: Path) -> None:
    text = "reading,state\n1.5,0\n2.5,1\n0.5,0\n"
    out, schema = schema_from(tmp_path, text, InferRequest(target="state", positive_class="1"))
    assert schema.kind("state") == "integer" and schema.roles.positive_class == 1
    assert yaml.safe_load(out.read_text())["columns"]["state"]["isin"] == [0, 1]


def test_a_missing_target_or_unreadable_file_is_bad_input(customers: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no column 'churn' for --target"):
        infer_from_csv(customers, InferRequest(target="churn"))
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(BadInput, match="cannot read it as CSV"):
        infer_from_csv(binary, InferRequest(target="x"))


def test_target_and_positive_overrides_win(customers: Path, tmp_path: Path) -> None:
    path = infer(customers, tmp_path)
    schema = load_dataset_schema(path, target="plan", positive_class="premium")
    assert schema.target == "plan" and schema.roles.positive_class == "premium"
    assert "churned" in schema.features and "plan" not in schema.features
    with pytest.raises(BadInput, match="not among the schema's columns"):
        load_dataset_schema(path, target="nope")


def test_the_bundled_iris_schema_is_the_zero_config_dataset() -> None:
    schema = load_dataset_schema(BUNDLED_SCHEMAS / "iris.yaml")
    assert schema.target == "target" and len(schema.features) == 4


def test_names_follow_the_dataset(
    customers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RETRAIN_DATASET", "RETRAIN_SCHEMA", "RETRAIN_MODEL_NAME", "RETRAIN_SOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "home"))
    iris = load_settings()
    assert (iris.dataset, iris.model_name) == ("iris", "iris_model")
    assert iris.experiment == "iris_classification_experiment"
    assert source_files(iris)[0].name == "iris.csv"
    monkeypatch.setenv("RETRAIN_SCHEMA", str(infer(customers, tmp_path)))
    mine = load_settings()
    assert (mine.dataset, mine.model_name) == ("my_customers", "my_customers_model")
    with pytest.raises(BadInput, match="RETRAIN_SOURCE"):
        source_files(mine)
    monkeypatch.setenv("RETRAIN_SOURCE", str(tmp_path / "*.csv"))
    assert source_files(load_settings()) == [customers]
    monkeypatch.setenv("RETRAIN_DATASET", "other")
    assert load_settings(model_name="x").model_name == "x"
    assert load_settings().experiment == "other_classification_experiment"


def test_a_file_stem_becomes_a_table_prefix() -> None:
    assert dataset_name("my-data 2026") == "my_data_2026"
    assert dataset_name("2026_sales") == "t2026_sales"


def test_boolean_and_padded_targets_clean_every_row(tmp_path: Path) -> None:
    text = "reading , fraud \n1.5,True\n2.5,False\n0.5,True\n"
    _, schema = schema_from(tmp_path, text, InferRequest(target="fraud", positive_class="True"))
    assert schema.columns == ["reading", "fraud"] and schema.kind("fraud") == "categorical"
    raw = as_raw(pd.DataFrame({"reading": ["1.5", "2.5"], "fraud": ["True", "False"]}))
    split = split_clean_rejected(raw, schema, None)
    assert len(split.cleaned) == 2 and split.rejected.empty


def test_a_positive_class_must_be_one_of_the_labels(customers: Path, tmp_path: Path) -> None:
    path = infer(customers, tmp_path)
    with pytest.raises(BadInput, match="positive class 'Yes' is not a label of 'churned'"):
        load_dataset_schema(path, positive_class="Yes")


def test_a_stray_text_label_makes_the_labels_text(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("reading,state\n1.5,0\n2.5,1\n0.5,x\n")
    document = yaml.safe_load(infer_from_csv(path, InferRequest(target="state")))
    assert document["columns"]["state"] == {
        "dtype": "str",
        "nullable": False,
        "isin": ["0", "1", "x"],
    }
