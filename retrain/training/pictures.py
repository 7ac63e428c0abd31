"""Pictures of a tuning run: confusion matrix, ROC curves, Optuna history and importances.

Pure: arrays and a study in, matplotlib figures out (saving them is the tracking adapter's job).
Optuna's matplotlib backend is used because its plotly PNG export needs a browser download.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import optuna
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from retrain.training.calibration import expected_calibration_error, reliability_points


def confusion_matrix_figure(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> Figure:
    """Holdout confusion matrix, true labels down, predicted across."""
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=classes, ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title("Holdout confusion matrix")
    return figure


def roc_figure(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> Figure:
    """One ROC curve per class (that class against the rest) on the holdout rows."""
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    shown = classes[-1:] if len(classes) == 2 else classes
    for label in shown:
        column = list(classes).index(label)
        RocCurveDisplay.from_predictions(
            np.asarray(y_true) == label, proba[:, column], name=str(label), ax=ax
        )
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    which = f"class {shown[0]}" if len(shown) == 1 else "each class"
    ax.set_title(f"Holdout ROC: {which} vs the rest")
    ax.set_xlabel("False positive rate")  # not scikit-learn's "(Positive label: 1)"
    ax.set_ylabel("True positive rate")
    return figure


def reliability_figure(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: Any, method: str
) -> Figure:
    """Predicted probability against observed frequency on the holdout, per bin of the ECE
    (marker area by rows): on the diagonal, the probabilities mean what they say."""
    predicted, observed, rows = reliability_points(y_true, proba, classes, positive)
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.plot(predicted, observed, color="tab:blue")
    ax.scatter(predicted, observed, s=20 + 200 * rows / max(rows.max(), 1), color="tab:blue")
    what = "positive class" if len(classes) == 2 else "top label"
    ax.set_xlabel(f"Predicted probability ({what})")
    ax.set_ylabel("Observed frequency")
    ece = expected_calibration_error(y_true, proba, classes, positive)
    ax.set_title(f"Holdout reliability ({method}), ECE {ece:.3f}")
    return figure


# Optuna names a family's parameters with its prefix (one study may mix families); the
# logged params of the best trial carry none, so the importance plot says the family instead.
PARAM_PREFIXES = {"logreg_": "logreg", "hgb_": "hgb", "lgbm_": "lightgbm"}


def param_label(name: str) -> str:
    """`lgbm_num_leaves` as `num_leaves (lightgbm)`, as the logged params name it."""
    for prefix, family in PARAM_PREFIXES.items():
        if name.startswith(prefix):
            return f"{name.removeprefix(prefix)} ({family})"
    return name


def study_figures(study: optuna.Study, target: str = "mean CV AUROC") -> dict[str, Figure]:
    """Optimisation history (its axis named for the metric the study maximised, `target`)
    and parameter importances; importances need two finished trials with varying
    parameters, so they are left out when the study is too small."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    plt.switch_backend("agg")
    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = optuna_plots.plot_optimization_history(study, target_name=target)
        figures["optuna_history.png"] = _detach(history.figure)
        try:
            importances = optuna_plots.plot_param_importances(study)
            labels = [param_label(t.get_text()) for t in importances.get_yticklabels()]
            importances.set_yticks(importances.get_yticks(), labels=labels)
            figures["optuna_param_importances.png"] = _detach(importances.figure)
        except (ValueError, RuntimeError, ZeroDivisionError):
            pass
    return figures


def _detach(figure: Figure) -> Figure:
    """Take a pyplot figure out of pyplot's registry so it is freed with its last reference."""
    import matplotlib.pyplot as plt

    figure.set_layout_engine("constrained")
    plt.close(figure)
    return figure
