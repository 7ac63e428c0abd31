"""The default source: the iris data that ships with scikit-learn, written as a CSV file."""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_iris


def write_bundled_iris(folder: Path) -> Path:
    """Write scikit-learn's iris (its own column names, species names in `target`) to CSV.

    The bytes are the same every time, so the file is one batch that loads once.
    """
    data = load_iris(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = data.target_names[data.target]
    path = folder / "iris.csv"
    folder.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n")
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path
