"""The promotion decision and its bootstrap on tiny arrays: no registry, no mocks."""

from __future__ import annotations

import numpy as np
import pytest

from retrain.promotion.rules import Bootstrap, PromotionRules, decide, paired_bootstrap

RULES = PromotionRules()


def test_first_champion_needs_only_the_floor() -> None:
    assert decide(0.7, None, RULES).promote
    refused = decide(0.4, None, RULES)
    assert not refused.promote and "below min_auroc" in refused.reason


def test_a_tie_keeps_the_champion_and_a_strict_gain_promotes() -> None:
    assert decide(0.95, 0.95, RULES).name == "kept"
    assert decide(0.951, 0.95, RULES).name == "promoted"


def test_min_improvement_is_a_margin_to_beat() -> None:
    rules = PromotionRules(min_improvement=0.01)
    assert not decide(0.955, 0.95, rules).promote
    assert decide(0.9601, 0.95, rules).promote


def test_significance_needs_the_interval_above_zero() -> None:
    rules = PromotionRules(require_significance=True)
    assert decide(0.99, 0.9, rules, Bootstrap(0.01, 0.1, 1000, 0)).promote
    unsure = decide(0.99, 0.9, rules, Bootstrap(-0.01, 0.1, 1000, 0))
    assert not unsure.promote and "not significant" in unsure.reason


def labels_and_scores(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array(["no", "yes"] * (n // 2))
    signal = (y == "yes").astype(float) + rng.normal(0, noise, len(y))
    p = 1 / (1 + np.exp(-signal))
    return y, np.column_stack([1 - p, p])


def test_bootstrap_sees_a_clearly_better_model() -> None:
    y, good = labels_and_scores(200, 0.3, 1)
    _, poor = labels_and_scores(200, 3.0, 2)
    result = paired_bootstrap(y, good, poor, np.array(["no", "yes"]), RULES)
    assert result.low > 0 and result.used + result.skipped == RULES.resamples


def test_bootstrap_skips_and_counts_resamples_with_one_class() -> None:
    y = np.array(["no"] * 3 + ["yes"])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    result = paired_bootstrap(y, proba, proba, np.array(["no", "yes"]), RULES)
    assert result.skipped > 0 and result.used + result.skipped == RULES.resamples
    assert result.low == pytest.approx(0.0) and result.high == pytest.approx(0.0)
