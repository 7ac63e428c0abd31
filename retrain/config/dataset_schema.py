"""A dataset's schema file: pandera's YAML rules plus the roles retrain reads from one block.

pandera's YAML keeps no column metadata, so the roles live in one top-level block,
`metadata: {retrain: {target, positive_class, ids, timestamps}}`, which is read and stripped
before the rest goes to pandera. Each column's kind follows from its dtype: float numeric,
int integer, bool boolean, anything else (str) categorical. A text feature whose values parse
as numbers (or booleans) but for at most 1% is inferred with that kind, and those values are
reported: cleaning rejects their rows (`retrain.data.infer_schema` writes such a file). Reading
a schema is all this module does: no SQL, MLflow or Prefect.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandera.pandas as pa
import yaml

from retrain.errors import BadInput

KINDS = ("numeric", "integer", "boolean", "categorical")
DEFAULT_TARGET = "target"
# pandas.read_csv's default missing-value markers: a cell holding one of them is missing.
ROW_KEYS = ["batch_id", "line_no", "row_hash"]  # what every stored row carries beside its cells
MISSING_MARKERS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
     "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
)  # fmt: skip


def kind_of(dtype: object) -> str:
    """The kind of a pandera/pandas dtype: numeric, integer, boolean or categorical."""
    name = str(dtype).lower()
    if name.startswith("float"):
        return "numeric"
    if name.startswith(("int", "uint")):
        return "integer"
    if name.startswith("bool"):
        return "boolean"
    return "categorical"


@dataclass(frozen=True)
class Roles:
    """What each special column is for; ids and timestamps are kept but never features."""

    target: str = DEFAULT_TARGET
    positive_class: Any = None
    ids: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()  # kept and cleaned, never a feature (a leak, a free-text note)


@dataclass(frozen=True)
class DatasetSchema:
    """The pandera rules of a dataset (roles stripped) and its roles."""

    rules: pa.DataFrameSchema
    roles: Roles = field(default_factory=Roles)

    @property
    def name(self) -> str | None:
        return self.rules.name

    @property
    def columns(self) -> list[str]:
        return list(self.rules.columns)

    @property
    def target(self) -> str:
        return self.roles.target

    @property
    def positive_class(self) -> Any:
        return self.roles.positive_class

    @property
    def features(self) -> list[str]:
        kept = {self.target, *self.roles.ids, *self.roles.timestamps, *self.roles.ignore}
        return [c for c in self.columns if c not in kept]

    def kind(self, column: str) -> str:
        return kind_of(self.rules.columns[column].dtype)

    def nullable(self, column: str) -> bool:
        return bool(self.rules.columns[column].nullable) and column != self.target

    @property
    def feature_kinds(self) -> dict[str, str]:
        return {c: self.kind(c) for c in self.features}

    @property
    def nullable_features(self) -> frozenset[str]:
        return frozenset(c for c in self.features if self.nullable(c))


def parse_roles(block: object, columns: list[str], where: str) -> Roles:
    """The `metadata.retrain` block, checked against the schema's columns."""
    block = block or {}
    if not isinstance(block, dict):
        raise BadInput(f"{where}: metadata.retrain must be a mapping (target, ids, ...)")
    target = str(block.get("target") or DEFAULT_TARGET)
    ids = tuple(str(c) for c in block.get("ids") or ())
    timestamps = tuple(str(c) for c in block.get("timestamps") or ())
    ignore = tuple(str(c) for c in block.get("ignore") or ())
    named = (("target", [target]), ("ids", ids), ("timestamps", timestamps), ("ignore", ignore))
    for role, names in named:
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise BadInput(
                f"{where}: {role} {unknown} not among the schema's columns; fix "
                "metadata.retrain or set RETRAIN_TARGET"
            )
    if target in (*ids, *timestamps, *ignore):
        raise BadInput(
            f"{where}: the target {target!r} cannot also be an id, a timestamp or ignored"
        )
    return Roles(target, block.get("positive_class"), ids, timestamps, ignore)


def read_schema_text(text: str, where: str = "schema") -> tuple[dict, dict]:
    """(pandera part, retrain roles block) of a schema file's YAML text."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadInput(f"{where} is not YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(document, dict) or not isinstance(document.get("columns"), dict):
        raise BadInput(f"{where} is not a pandera YAML schema (no columns); check RETRAIN_SCHEMA")
    metadata = document.get("metadata") or {}
    roles = metadata.pop("retrain", None) if isinstance(metadata, dict) else None
    if not metadata:
        document.pop("metadata", None)
    return document, roles or {}


def load_dataset_schema(
    path: Path, target: str | None = None, positive_class: object | None = None
) -> DatasetSchema:
    """Read a schema file; `target`/`positive_class` (RETRAIN_TARGET/_POSITIVE_CLASS) win."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise BadInput(f"cannot read schema {path} ({err.strerror}); check RETRAIN_SCHEMA") from err
    return parse_dataset_schema(text, str(path), target, positive_class)


@functools.lru_cache(maxsize=16)
def parse_dataset_schema(
    text: str, path: str, target: str | None, positive_class: object | None
) -> DatasetSchema:
    """The schema of a file's text, parsed once per process for the same text and overrides
    (pandera's YAML reader is the cost; every stage of a run asks for the schema)."""
    document, block = read_schema_text(text, f"schema {path}")
    try:
        rules = pa.DataFrameSchema.from_yaml(yaml.safe_dump(document, sort_keys=False))
    except Exception as err:
        raise BadInput(
            f"schema {path} is not a pandera YAML schema ({str(err)[:200]}); check RETRAIN_SCHEMA"
        ) from err
    block = {**block, **({"target": target} if target else {})}
    if positive_class is not None:
        block["positive_class"] = positive_class
    roles = parse_roles(block, list(rules.columns), f"schema {path}")
    return DatasetSchema(rules, typed_positive(rules, roles, f"schema {path}"))


def typed_positive(rules: pa.DataFrameSchema, roles: Roles, where: str) -> Roles:
    """The positive class in the target's own type (an integer label stays an integer), and
    one of the target's labels when the schema lists them."""
    value = roles.positive_class
    if value is None:
        return roles
    column = rules.columns[roles.target]
    if kind_of(column.dtype) == "integer":
        value = parse_integer(value)
        if value is None:
            raise BadInput(f"{where}: positive class {roles.positive_class!r} is not an integer")
    else:
        value = str(value)
    allowed = allowed_labels(column)
    if allowed is not None and value not in allowed:
        raise BadInput(
            f"{where}: positive class {value!r} is not a label of {roles.target!r} "
            f"(labels: {sorted(allowed, key=str)[:10]}); check RETRAIN_POSITIVE_CLASS"
        )
    return replace(roles, positive_class=value)


def allowed_labels(column: pa.Column) -> list | None:
    """The values an `isin` check of the column allows, or None when it has none."""
    for check in column.checks:
        if check.name == "isin":
            return list(check.statistics.get("allowed_values") or [])
    return None


INT64 = (-(2**63), 2**63 - 1)


def parse_integer(text: object) -> int | None:
    """An integer cell exactly (no trip through float: ids above 2**53 keep every digit);
    `3.0` is 3; None when it is not a whole number that fits in 64 bits."""
    word = str(text).strip()
    try:
        value = int(word)
    except ValueError:
        try:
            number = float(word)
        except ValueError:
            return None
        if not number.is_integer():
            return None
        value = int(number)
    return value if INT64[0] <= value <= INT64[1] else None
