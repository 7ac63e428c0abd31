"""Champion comparison, pure: holdout answers in, a decision out.

No registry, store or server here; `retrain.promotion.promote` gathers the inputs and
applies the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrain.training.families import auroc


@dataclass(frozen=True)
class PromotionRules:
    """When a challenger replaces the champion (DESIGN.md's tie rule: strictly better)."""

    min_improvement: float = 0.0
    min_auroc: float = 0.5
    require_significance: bool = False
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 42
    max_brier_increase: float | None = None  # None: calibration does not decide


@dataclass(frozen=True)
class Bootstrap:
    """Paired bootstrap of AUROC(challenger) - AUROC(champion) on the same rows."""

    low: float
    high: float
    used: int
    skipped: int

    def describe(self) -> str:
        return (
            f"bootstrap {self.used} resamples ({self.skipped} missing a class skipped): "
            f"difference in [{self.low:+.4f}, {self.high:+.4f}]"
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str

    @property
    def name(self) -> str:
        return "promoted" if self.promote else "kept"


def paired_bootstrap(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    classes: np.ndarray,
    rules: PromotionRules,
    positive: object | None = None,
) -> Bootstrap:
    """Resample the holdout rows with replacement; both models are scored on the same
    resample. A resample missing a class (a single class, for binary data) has no AUROC: it
    is skipped and counted."""
    rng = np.random.default_rng(rules.seed)
    y = np.asarray(y)
    diffs, skipped = [], 0
    for _ in range(rules.resamples):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < len(classes):
            skipped += 1
            continue
        diffs.append(
            auroc(y[rows], challenger[rows], classes, positive)
            - auroc(y[rows], champion[rows], classes, positive)
        )
    if not diffs:
        return Bootstrap(float("nan"), float("nan"), 0, skipped)
    tail = (1 - rules.confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return Bootstrap(float(low), float(high), len(diffs), skipped)


def decide(
    challenger_auroc: float,
    champion_auroc: float | None,
    rules: PromotionRules,
    bootstrap: Bootstrap | None = None,
) -> Decision:
    """Promote when the challenger is strictly better by more than `min_improvement` (and,
    when significance is required, the bootstrap interval lies above zero). With no champion
    yet, the first challenger that clears `min_auroc` is promoted."""
    if champion_auroc is None:
        if challenger_auroc >= rules.min_auroc:
            return Decision(True, f"first champion: AUROC {challenger_auroc:.4f}")
        return Decision(
            False, f"AUROC {challenger_auroc:.4f} is below min_auroc {rules.min_auroc:.4f}"
        )
    gain = challenger_auroc - champion_auroc
    if gain <= rules.min_improvement:
        return Decision(
            False,
            f"challenger AUROC {challenger_auroc:.4f} does not beat champion "
            f"{champion_auroc:.4f} by more than {rules.min_improvement:.4f}",
        )
    unsure = bootstrap is None or not bootstrap.used or bootstrap.low <= 0
    if rules.require_significance and unsure:
        shown = bootstrap.describe() if bootstrap else "no bootstrap"
        return Decision(
            False, f"gain {gain:+.4f} not significant at {rules.confidence:.0%}: {shown}"
        )
    return Decision(
        True,
        f"challenger AUROC {challenger_auroc:.4f} beats champion {champion_auroc:.4f} "
        f"({gain:+.4f})",
    )


def check_calibration(
    decision: Decision,
    challenger_brier: float | None,
    champion_brier: float | None,
    rules: PromotionRules,
) -> Decision:
    """A promotion stands only if the challenger's Brier score is not worse than the
    champion's by more than `max_brier_increase` (when set and both are known)."""
    limit = rules.max_brier_increase
    if not decision.promote or limit is None or None in (challenger_brier, champion_brier):
        return decision
    if challenger_brier - champion_brier > limit:
        return Decision(
            False,
            f"challenger Brier score {challenger_brier:.4f} is worse than the champion's "
            f"{champion_brier:.4f} by more than RETRAIN_MAX_BRIER_INCREASE {limit:.4f}",
        )
    return decision
