"""The drift verdicts, pure: a batch's rows against the training rows, feature by feature.

Pure logic (pandas and scipy's two-sample statistics): frames in, a report out. The test
follows the sample size, as Evidently's defaults do: with at most `SMALL` rows on either side,
a significance test (Kolmogorov-Smirnov for numbers, chi-square for categories, p < 0.05);
above it, where every tiny difference is significant, a distance with a threshold
(Wasserstein distance in reference standard deviations > 0.1 for numbers, Jensen-Shannon
distance > 0.1 for categories). A missing value is a category of its own, and for numbers the
share of missing values drifts when it moves by more than 0.1.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

SMALL = 1000
P_VALUE = 0.05
DISTANCE = 0.1
MISSING = "(missing)"


@dataclass(frozen=True)
class FeatureDrift:
    column: str
    kind: str
    method: str
    statistic: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Every feature's verdict and the share of features that drifted."""

    features: list[FeatureDrift]
    reference_rows: int
    current_rows: int

    @property
    def drifted_columns(self) -> list[str]:
        return [f.column for f in self.features if f.drifted]

    @property
    def drift_share(self) -> float:
        return len(self.drifted_columns) / len(self.features) if self.features else 0.0

    def describe(self) -> str:
        which = f": {', '.join(self.drifted_columns[:10])}" if self.drifted_columns else ""
        return (
            f"{len(self.drifted_columns)} of {len(self.features)} features drifted "
            f"(share {self.drift_share:.2f}; {self.current_rows} new rows against "
            f"{self.reference_rows} training rows){which}"
        )

    def table(self) -> list[dict[str, object]]:
        return [
            {"feature": f.column, "kind": f.kind, "method": f.method,
             "statistic": round(f.statistic, 4), "threshold": f.threshold,
             "drifted": "yes" if f.drifted else "no"}
            for f in self.features
        ]  # fmt: skip

    def html(self, title: str) -> str:
        """A standalone HTML page of the verdicts, for MLflow's artifact viewer."""
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
            for row in self.table()
        )
        head = "".join(f"<th>{name}</th>" for name in (self.table() or [{}])[0])
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            "</title><style>td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(self.describe())}</p>"
            f"<table><tr>{head}</tr>{rows}</table></body></html>"
        )


def numeric_drift(column: str, kind: str, ref: pd.Series, cur: pd.Series) -> FeatureDrift:
    """KS p-value for small samples, else Wasserstein distance in reference deviations; a
    shift in the missing share of more than DISTANCE drifts too."""
    missing_shift = abs(float(ref.isna().mean()) - float(cur.isna().mean()))
    a = pd.to_numeric(ref, errors="coerce").dropna().to_numpy(dtype=float)
    b = pd.to_numeric(cur, errors="coerce").dropna().to_numpy(dtype=float)
    if len(a) == 0 or len(b) == 0:
        return FeatureDrift(column, kind, "missing share", missing_shift, DISTANCE,
                            missing_shift > DISTANCE)  # fmt: skip
    if min(len(a), len(b)) <= SMALL:
        p_value = float(stats.ks_2samp(a, b).pvalue)
        drifted = p_value < P_VALUE or missing_shift > DISTANCE
        return FeatureDrift(column, kind, "K-S p-value", p_value, P_VALUE, drifted)
    scale = float(np.std(a)) or 1.0
    distance = float(stats.wasserstein_distance(a, b)) / scale
    drifted = distance > DISTANCE or missing_shift > DISTANCE
    return FeatureDrift(column, kind, "Wasserstein (std)", distance, DISTANCE, drifted)


def categorical_drift(column: str, kind: str, ref: pd.Series, cur: pd.Series) -> FeatureDrift:
    """Chi-square p-value for small samples, else Jensen-Shannon distance; missing values are
    a category."""
    a = ref.astype(object).where(ref.notna(), MISSING).astype(str).value_counts()
    b = cur.astype(object).where(cur.notna(), MISSING).astype(str).value_counts()
    levels = sorted(set(a.index) | set(b.index))
    counts = np.array([[a.get(v, 0) for v in levels], [b.get(v, 0) for v in levels]], float)
    if len(levels) < 2:
        return FeatureDrift(column, kind, "chi-square p-value", 1.0, P_VALUE, False)
    if min(counts.sum(axis=1)) <= SMALL:
        p_value = float(stats.chi2_contingency(counts + 0.5).pvalue)
        return FeatureDrift(column, kind, "chi-square p-value", p_value, P_VALUE, p_value < P_VALUE)
    distance = float(jensenshannon(counts[0], counts[1], base=2))
    return FeatureDrift(column, kind, "Jensen-Shannon", distance, DISTANCE, distance > DISTANCE)


def batch_drift(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: Mapping[str, str]
) -> DriftReport:
    """Each feature of `kinds` (numeric, integer, boolean, categorical) compared."""
    features = []
    for column, kind in kinds.items():
        compare = numeric_drift if kind in ("numeric", "integer") else categorical_drift
        features.append(compare(column, kind, reference[column], current[column]))
    return DriftReport(features, len(reference), len(current))
