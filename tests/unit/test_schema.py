"""Schema files: inference round trip, roles, overrides, and the names that follow the dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrain.config.dataset_schema import DatasetSchema, load_dataset_schema
from retrain.config.settings import BUNDLED_SCHEMAS, dataset_name, load_settings
from retrain.data.cleaning_rules import Split, split_clean_rejected
from retrain.data.infer_schema import InferRequest, Rejects, infer_from_csv, infer_schema_from_csv
from retrain.errors import BadInput
from retrain.io.bundled_iris import source_files
from retrain.io.source_files import iter_records, open_source

RETRAIN = str(Path(sys.executable).parent / "retrain")

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


def numbers_csv(tmp_path: Path, values: list[str]) -> Path:
    """A CSV of one `reading` column of `values` beside a 0/1 target, and a note whose second
    row holds a quoted newline (so a row's line differs from its row number)."""
    notes = ["x", '"two\nlines"']
    rows = [f"{v},{i % 2},{notes[i == 1]}" for i, v in enumerate(values)]
    path = tmp_path / "readings.csv"
    path.write_text("\n".join(["reading,state,note", *rows]) + "\n")
    return path


def cleaned_by_ingest(path: Path, schema: DatasetSchema) -> Split:
    """The file's rows as ingest reads them (their line numbers), split by the clean rules."""
    src = open_source(path, "utf-8", schema.columns)
    names = [*schema.columns, "line_no", "row_hash", "n_fields", "extra_fields"]
    raw = pd.DataFrame.from_records(list(iter_records(src, schema.columns)), columns=names)
    raw["batch_id"] = src.batch_id
    return split_clean_rejected(raw, schema, None)


def test_one_typo_among_400_integers_is_reported_and_rejected(tmp_path: Path) -> None:
    values = [str(i) for i in range(400)]
    values.insert(5, "abc")
    path = numbers_csv(tmp_path, values)
    inferred = infer_schema_from_csv(path, InferRequest(target="state"))
    out = tmp_path / "readings.yaml"
    out.write_text(inferred.text)
    schema = load_dataset_schema(out)
    assert schema.kind("reading") == "integer" and schema.kind("note") == "categorical"
    # the header is line 1 and row 2 spans lines 3-4, so the sixth row starts on line 8
    assert inferred.rejects == (Rejects("reading", "integer", 1, ((8, "abc"),)),)
    assert inferred.rejects[0].describe() == (
        "column 'reading': integer; 1 value will be rejected at clean time: line 8 'abc'"
    )
    split = cleaned_by_ingest(path, schema)
    assert len(split.cleaned) == 400
    assert split.rejected[["line_no", "reason"]].values.tolist() == [
        [8, "reading: not an integer (or beyond 64 bits) (got 'abc')"]
    ]


def test_typos_in_decimals_are_counted_and_the_first_five_shown(tmp_path: Path) -> None:
    values = [f"{i / 4}" for i in range(700)]
    for at in (10, 20, 30, 40, 50, 60):
        values[at] = f"n{at}"
    inferred = infer_schema_from_csv(numbers_csv(tmp_path, values), InferRequest(target="state"))
    assert yaml.safe_load(inferred.text)["columns"]["reading"]["dtype"] == "float64"
    (rejects,) = inferred.rejects
    assert (rejects.kind, rejects.count) == ("numeric", 6)
    assert rejects.first == ((13, "n10"), (23, "n20"), (33, "n30"), (43, "n40"), (53, "n50"))
    assert rejects.describe().endswith(
        "6 values will be rejected at clean time: line 13 'n10', line 23 'n20', line 33 'n30', "
        "line 43 'n40', line 53 'n50', ..."
    )


def test_more_than_one_percent_of_text_keeps_a_column_categorical(tmp_path: Path) -> None:
    just = infer_schema_from_csv(
        numbers_csv(tmp_path, [*map(str, range(99)), "abc"]), InferRequest(target="state")
    )
    assert yaml.safe_load(just.text)["columns"]["reading"]["dtype"] == "int64"
    assert [(r.column, r.count) for r in just.rejects] == [("reading", 1)]
    values = [*map(str, range(98)), "abc", "def"]
    inferred = infer_schema_from_csv(numbers_csv(tmp_path, values), InferRequest(target="state"))
    assert yaml.safe_load(inferred.text)["columns"]["reading"]["dtype"] == "str"
    assert inferred.rejects == ()


def test_a_typo_in_a_boolean_or_0_1_column_is_reported(tmp_path: Path) -> None:
    flags = ["True", "False"] * 100
    flags[7] = "Ture"
    codes = ["1", "0"] * 100
    codes[3] = "o"
    rows = [f"{f},{c},{i % 2}" for i, (f, c) in enumerate(zip(flags, codes, strict=True))]
    path = tmp_path / "flags.csv"
    path.write_text("\n".join(["active,code,state", *rows]) + "\n")
    inferred = infer_schema_from_csv(path, InferRequest(target="state"))
    columns = yaml.safe_load(inferred.text)["columns"]
    assert (columns["active"]["dtype"], columns["code"]["dtype"]) == ("bool", "int64")
    assert inferred.rejects == (
        Rejects("active", "boolean", 1, ((9, "Ture"),)),
        Rejects("code", "integer", 1, ((5, "o"),)),
    )


def test_gaps_and_roles_keep_what_pandas_infers(tmp_path: Path) -> None:
    """A typo is treated as if fixed: integers with a gap are numeric, True/False with a gap
    stays text (as without the typo), and an id column is never retyped."""
    ints, flags = [str(i) for i in range(200)], ["True", "False"] * 100
    ints[4], ints[9], flags[4], flags[9] = "", "x", "", "Flase"
    rows = [f"{i},{n},{f},{i % 2}" for i, (n, f) in enumerate(zip(ints, flags, strict=True))]
    rows[12] = "id-12,12,True,0"
    path = tmp_path / "gaps.csv"
    path.write_text("\n".join(["key,count,active,state", *rows]) + "\n")
    inferred = infer_schema_from_csv(path, InferRequest(target="state", ids=("key",)))
    columns = yaml.safe_load(inferred.text)["columns"]
    assert [columns[c]["dtype"] for c in ("key", "count", "active")] == ["str", "float64", "str"]
    assert inferred.rejects == (Rejects("count", "numeric", 1, ((11, "x"),)),)


def test_clean_columns_give_no_report(customers: Path) -> None:
    request = InferRequest(target="churned", ids=("customer id",), timestamps=("signed_up",))
    inferred = infer_schema_from_csv(customers, request)
    assert inferred.rejects == () and inferred.text == infer_from_csv(customers, request)


def test_the_cli_prints_the_report_on_stderr_and_the_schema_on_stdout(tmp_path: Path) -> None:
    values = [str(i) for i in range(400)]
    values.insert(5, "abc")
    path = numbers_csv(tmp_path, values)
    done = subprocess.run(
        [RETRAIN, "schema", "infer", "--source", str(path), "--target", "state"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["columns"]["reading"]["dtype"] == "int64"
    assert (
        "column 'reading': integer; 1 value will be rejected at clean time: line 8 'abc'\n"
        in done.stderr
    )
    assert "rejected" not in done.stdout
