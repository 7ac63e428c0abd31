"""`retrain schema infer`: a dataset's schema file written from a sample of a CSV file.

Each column's kind follows from the sample's dtype: float numeric, int integer, bool boolean,
anything else (str) categorical. A text feature whose values parse as numbers (or booleans)
but for at most 1% is inferred with that kind, and those values are reported: cleaning rejects
their rows. The schema file's format is `retrain.config.dataset_schema`'s."""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import yaml

from retrain.config.dataset_schema import (
    MISSING_MARKERS,
    kind_of,
    parse_integer,
)
from retrain.config.settings import dataset_name
from retrain.data.cleaning_rules import parse_cells
from retrain.errors import BadInput
from retrain.io.source_files import SourceFile, iter_records

SAMPLE_ROWS = 100_000
BOUND_CHECKS = frozenset(
    ["greater_than", "greater_than_or_equal_to", "less_than", "less_than_or_equal_to", "in_range"]
)


@dataclass(frozen=True)
class InferRequest:
    """What `retrain schema infer` was asked for."""

    target: str
    positive_class: str | None = None
    ids: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    with_bounds: bool = False
    ignore: tuple[str, ...] = ()


def portable_dtype(dtype: str) -> str:
    """pandas' string dtypes (`string[pyarrow]`, `object`) written as plain `str`."""
    return dtype if kind_of(dtype) != "categorical" else "str"


def infer_schema_yaml(
    sample: pd.DataFrame,
    labels: list,
    name: str,
    request: InferRequest,
    kinds: Mapping[str, str] | None = None,
) -> str:
    """A schema file from a sample of the source (pandera's inference and YAML) and the
    target's labels from a full pass. Only checks no later batch can trip by chance are kept:
    features nullable unless required, no bounds unless asked, no label lists but the target's.
    `kinds` gives the kind of columns typed despite a few bad values (see `type_tolerantly`)."""
    kinds = kinds or {}
    named = [request.target, *request.ids, *request.timestamps, *request.required]
    unknown = [c for c in named if c not in sample.columns]
    if unknown:
        raise BadInput(f"columns {unknown} are not in the file (it has {list(sample.columns)[:8]})")
    document = yaml.safe_load(pa.infer_schema(sample).to_yaml())
    document.pop("index", None)
    for column, spec in document["columns"].items():
        spec = {
            k: v for k, v in (spec or {}).items() if request.with_bounds or k not in BOUND_CHECKS
        }
        dtype = TYPED_DTYPES.get(kinds.get(column, ""))
        spec["dtype"] = dtype or portable_dtype(str(spec.get("dtype")))
        spec["nullable"] = column not in (request.target, *request.required)
        document["columns"][column] = spec
    target_spec = document["columns"][request.target]
    target_spec["dtype"] = "int64" if all(isinstance(v, int) for v in labels) else "str"
    target_spec["isin"] = labels
    document["coerce"] = True
    document["name"] = name
    roles: dict[str, Any] = {"target": request.target}
    if request.positive_class is not None:
        roles["positive_class"] = typed_label(request.positive_class, labels)
    roles |= {"ids": list(request.ids), "timestamps": list(request.timestamps)}
    if request.ignore:
        roles["ignore"] = list(request.ignore)
    document["metadata"] = {"retrain": roles}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def typed_label(value: str, labels: list) -> Any:
    """`--positive` as one of the labels (an integer label stays an integer)."""
    for label in labels:
        if str(label) == str(value):
            return label
    raise BadInput(f"positive class {value!r} is not a label of the target (labels: {labels[:10]})")


def infer_from_csv(path: Path, request: InferRequest, encoding: str = "utf-8") -> str:
    """The schema file's YAML text inferred from a CSV file (see `infer_schema_from_csv`)."""
    return infer_schema_from_csv(path, request, encoding).text


def infer_schema_from_csv(
    path: Path, request: InferRequest, encoding: str = "utf-8"
) -> InferredSchema:
    """Read a sample of the CSV file (and its whole target column) and infer its schema, and
    the sample's values that cleaning will reject because they do not parse as their kind."""
    sample, labels = read_sample(path, request, encoding)
    kinds = type_tolerantly(sample, request)
    text = infer_schema_yaml(sample, labels, dataset_name(Path(path).stem), request, kinds)
    return InferredSchema(text, find_rejects(path, encoding, kinds))


def read_sample(path: Path, request: InferRequest, encoding: str) -> tuple[pd.DataFrame, list]:
    """(the first SAMPLE_ROWS rows as pandas reads them, the target's labels from a full pass).
    Header names are stripped, as ingest strips them."""
    try:
        sample = pd.read_csv(path, nrows=SAMPLE_ROWS, encoding=encoding, low_memory=False)
        sample.columns = [str(c).strip() for c in sample.columns]
        if request.target not in sample.columns:
            raise BadInput(
                f"{path}: no column {request.target!r} for --target (columns: "
                f"{list(sample.columns)[:8]})"
            )
        texts: set[str] = set()
        for chunk in pd.read_csv(
            path, usecols=lambda c: str(c).strip() == request.target, dtype=str,
            encoding=encoding, chunksize=500_000,
        ):  # fmt: skip
            texts.update(chunk.iloc[:, 0].dropna().str.strip())
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInput(f"{path}: cannot read it as CSV ({str(err).splitlines()[0][:160]})") from err
    labels = typed_labels(texts - MISSING_MARKERS, f"{path}: the target {request.target!r}")
    return sample, labels


def typed_labels(texts: set[str], what: str) -> list:
    """The target's labels as the file writes them: integers when every label is a whole
    number, else strings (True/False stays text). A continuous target is refused: retrain
    trains classifiers."""
    if len(texts) < 2:
        raise BadInput(f"{what} has fewer than two labels; a classifier needs at least two")
    numbers = [parse_integer(t) for t in texts]
    if all(n is not None for n in numbers):
        return sorted(numbers)
    if len(texts) > 50 and all(_is_number(t) for t in texts):
        raise BadInput(
            f"{what} holds {len(texts)} distinct numbers: it looks continuous, and retrain trains "
            "classifiers; pick a label column for --target"
        )
    return sorted(texts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


TOLERANCE = 0.01  # the share of a text feature's values that may fail to parse as its kind
SHOWN_REJECTS = 5
TYPED_DTYPES = {"numeric": "float64", "integer": "int64", "boolean": "bool"}
# The words pandas reads as booleans: a column of them and nothing else is `bool`.
PANDAS_BOOLEANS = {"True": True, "TRUE": True, "true": True,
                   "False": False, "FALSE": False, "false": False}  # fmt: skip
INTEGER_TEXT = r"[+-]?\d+"


@dataclass(frozen=True)
class Rejects:
    """The sample's values of one column that do not parse as its kind: at clean time their
    rows are rejected, with a reason."""

    column: str
    kind: str
    count: int
    first: tuple[tuple[int, str], ...]  # (line number as ingest counts it, value)

    def describe(self) -> str:
        values = "value" if self.count == 1 else "values"
        shown = ", ".join(f"line {line} {shorten_text(value)}" for line, value in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        return (
            f"column {self.column!r}: {self.kind}; {self.count} {values} will be rejected "
            f"at clean time: {shown}{more}"
        )


@dataclass(frozen=True)
class InferredSchema:
    """A schema file's YAML text and, per column, the sample's values cleaning will reject."""

    text: str
    rejects: tuple[Rejects, ...] = ()


def shorten_text(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def type_tolerantly(sample: pd.DataFrame, request: InferRequest) -> dict[str, str]:
    """Retype, in place, the text features that a few bad values kept pandas from typing;
    returns their kinds. Roles (target, ids, timestamps) keep pandas' types."""
    roles = {request.target, *request.ids, *request.timestamps}
    kinds = {}
    for column in sample.columns:
        if column in roles or kind_of(sample[column].dtype) != "categorical":
            continue
        typed = tolerant_values(sample[column])
        if typed is not None:
            kinds[column], sample[column] = typed
    return kinds


def tolerant_values(values: pd.Series) -> tuple[str, pd.Series] | None:
    """(kind, typed values with the bad ones missing) of a text column that has bad values,
    but at most TOLERANCE of its present ones; None otherwise. The kind is the one pandas
    would give the column with its bad values fixed: integer only without missing values
    (else numeric), boolean only for True/False words without missing values."""
    stripped = values.astype("str").str.strip()
    missing = (stripped.isna() | stripped.isin(MISSING_MARKERS)).to_numpy(dtype=bool)
    numbers = pd.to_numeric(stripped.where(~missing), errors="coerce").astype("float64")
    numbers = numbers.where(np.isfinite(numbers))
    good = numbers.notna().to_numpy(dtype=bool)
    if has_few_bad(good, missing):
        whole = stripped[good].str.fullmatch(INTEGER_TEXT).all()
        if whole and not missing.any() and numbers.abs().max() < 2**63:
            integers = pd.Series(pd.NA, index=values.index, dtype="Int64")
            integers[good] = stripped[good].astype("int64").to_numpy()
            return "integer", integers
        return "numeric", numbers
    flags = stripped.map(PANDAS_BOOLEANS).astype("boolean")
    if not missing.any() and has_few_bad(flags.notna().to_numpy(dtype=bool), missing):
        return "boolean", flags
    return None


def has_few_bad(good: np.ndarray, missing: np.ndarray) -> bool:
    """Whether some present values are bad, but at most TOLERANCE of them."""
    bad = int((~good & ~missing).sum())
    return 0 < bad <= TOLERANCE * int((~missing).sum())


def find_rejects(path: Path, encoding: str, kinds: Mapping[str, str]) -> tuple[Rejects, ...]:
    """What cleaning will say of the sample's cells of `kinds`' columns: the values it
    rejects (its own parsing rules) at the line numbers ingest gives their rows."""

    cells = read_cells(path, encoding, list(kinds)) if kinds else pd.DataFrame()
    found = []
    for column, kind in kinds.items():
        if column not in cells.columns:  # a repeated header name pandas renamed
            continue
        _, reasons = parse_cells(cells[column], kind)
        bad = cells.loc[(reasons != "").to_numpy(dtype=bool), ["line_no", column]]
        first = tuple((int(line), str(value)) for line, value in bad.head(SHOWN_REJECTS).values)
        if len(bad):
            found.append(Rejects(column, kind, len(bad), first))
    return tuple(found)


def read_cells(path: Path, encoding: str, columns: list[str]) -> pd.DataFrame:
    """The text cells of `columns` in the sample's rows and their `line_no`, read as ingest
    reads them (retrain.io.source_files: a record's line is the file line where it starts)."""
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with Path(path).open(encoding=codec, newline="") as handle:
            header = [h.strip() for h in next(csv.reader(handle), [])]
        columns = [c for c in columns if c in header]
        records = iter_records(SourceFile(Path(path), "", header, codec), columns)
        rows = list(itertools.islice(records, SAMPLE_ROWS))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BadInput(f"{path}: cannot read it as CSV ({str(err).splitlines()[0][:160]})") from err
    names = [*columns, "line_no", "row_hash", "n_fields", "extra_fields"]
    return pd.DataFrame.from_records(rows, columns=names)


def ignore_columns(text: str, columns: list[str], where: str) -> str:
    """A schema file's text with `columns` added to `metadata.retrain.ignore` (each checked
    to be a column; one already ignored stays once)."""
    document = yaml.safe_load(text)
    known = list((document or {}).get("columns") or {})
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise BadInput(f"{where}: {unknown} not among the schema's columns {known[:20]}")
    roles = document.setdefault("metadata", {}).setdefault("retrain", {})
    roles["ignore"] = list(dict.fromkeys([*(roles.get("ignore") or []), *columns]))
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
