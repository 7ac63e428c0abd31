"""Small helpers shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from retrain.config.settings import load_settings
from retrain.io import engines, store

COLUMNS = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
    "target",
]
HEADER = ",".join(f'"{c}"' for c in COLUMNS)
GOOD_ROWS = ["5.1,3.5,1.4,0.2,setosa", "6.0,2.9,4.5,1.5,versicolor", "6.3,3.3,6.0,2.5,virginica"]


def write_csv(folder: Path, name: str, rows: list[str], header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def open_store() -> tuple[store.Engine, store.DatasetTables]:
    """Engine and tables as the current environment's settings say."""
    settings = load_settings()
    tables = store.dataset_tables(settings.dataset, settings.load_schema())
    return engines.make_engine(settings.database_url), tables


def count(table: str, where: str = "") -> int:
    engine, _ = open_store()
    quoted = engine.dialect.identifier_preparer.quote(table)
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {quoted} {where}")).scalar_one())


def row_keys(table: str) -> set[tuple[str, int]]:
    engine, _ = open_store()
    quoted = engine.dialect.identifier_preparer.quote(table)
    with engine.connect() as conn:
        return {
            (b, int(n)) for b, n in conn.execute(text(f"SELECT batch_id, line_no FROM {quoted}"))
        }
