"""The default source: the iris data that ships with scikit-learn, written as a CSV file, and
the choice between it and the configured source."""

from __future__ import annotations

from pathlib import Path

from retrain.config.settings import BUNDLED_SCHEMAS, Settings
from retrain.errors import BadInput
from retrain.io.source_files import list_csv_files


def write_bundled_iris(folder: Path) -> Path:
    """Write scikit-learn's iris (its own column names, species names in `target`) to CSV.

    The bytes are the same every time, so the file is one batch that loads once.
    """
    from sklearn.datasets import load_iris  # scikit-learn only when iris is the source

    data = load_iris(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = data.target_names[data.target]
    path = folder / "iris.csv"
    folder.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n")
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def source_files(settings: Settings, given: str | None = None) -> list[Path]:
    """What to load: `given` (--source), else RETRAIN_SOURCE, else the bundled iris, which
    only the zero-config iris dataset gets."""
    chosen = given or settings.source
    if chosen:
        return list_csv_files(Path(chosen).expanduser())
    if settings.dataset == "iris" and settings.schema_file == BUNDLED_SCHEMAS / "iris.yaml":
        return [write_bundled_iris(settings.home / "sources")]
    raise BadInput(
        f"no source for dataset {settings.dataset!r}: set RETRAIN_SOURCE to a CSV file, folder "
        "or glob, or pass --source"
    )
