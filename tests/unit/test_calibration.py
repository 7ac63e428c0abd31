"""Calibrated probabilities on small data: the Brier score and ECE as defined, held-back rows
(the newest with a time order), a calibration that mends an overconfident model without
changing its ranking, and the promotion rule on the Brier score."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from retrain.promotion.rules import Decision, PromotionRules, check_calibration
from retrain.training.calibration import (
    brier,
    calibrate,
    expected_calibration_error,
    held_back_rows,
)

CLASSES = np.array(["no", "yes"])


def test_brier_and_ece_are_what_they_say() -> None:
    y = np.array(["no", "yes", "yes", "no"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert brier(y, proba, CLASSES) == brier_score_loss(y == "yes", proba[:, 1])
    # bins of the positive probability: 0.1 (no), 0.4 (yes), 0.7 (no), 0.8 (yes)
    gaps = [abs(0.1 - 0), abs(0.4 - 1), abs(0.7 - 0), abs(0.8 - 1)]
    assert np.isclose(expected_calibration_error(y, proba, CLASSES), np.mean(gaps))
    three = np.array(["a", "b", "c"])
    top = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])  # right, then wrong (truth c)
    assert np.isclose(expected_calibration_error(np.array(["a", "c"]), top, three), 0.45)
    assert np.isclose(brier(np.array(["a", "c"]), top, three), (0.14 + 0.86) / 2)


def test_held_back_rows_are_the_newest_with_a_time_order_and_stratified_without() -> None:
    y = np.array(["no", "yes"] * 50)
    newest_first = np.arange(100)[::-1]
    held = held_back_rows(y, newest_first, seed=0, share=0.1)
    assert held.sum() == 10 and held[90:].all()
    random = held_back_rows(y, None, seed=0, share=0.1)
    assert random.sum() == 10 and (y[random] == "yes").sum() == 5


def test_calibration_mends_an_overconfident_model_and_keeps_its_ranking() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=3000)})
    y = np.where(x["a"] + rng.normal(0, 1.5, 3000) > 0, "yes", "no")
    model = LogisticRegression(C=1.0).fit(x.iloc[:1000], y[:1000])
    model.coef_ = model.coef_ * 6  # overconfident on purpose: probabilities pushed to 0 and 1
    calibrated, method = calibrate(model, x.iloc[1000:2000], y[1000:2000], seed=0)
    test_x, test_y = x.iloc[2000:], y[2000:]
    before, after = model.predict_proba(test_x), calibrated.predict_proba(test_x)
    assert method in ("sigmoid", "isotonic")
    assert brier(test_y, after, CLASSES) < brier(test_y, before, CLASSES) - 0.02
    assert expected_calibration_error(test_y, after, CLASSES) < 0.05
    if method == "sigmoid":  # monotone: the same ranking, the same AUROC
        assert np.isclose(roc_auc_score(test_y == "yes", after[:, 1]),
                          roc_auc_score(test_y == "yes", before[:, 1]))  # fmt: skip


def test_a_promotion_can_require_calibration_not_to_get_worse() -> None:
    promote = Decision(True, "better AUROC")
    rules = PromotionRules(max_brier_increase=0.01)
    assert check_calibration(promote, 0.150, 0.145, rules).promote
    kept = check_calibration(promote, 0.170, 0.145, rules)
    assert not kept.promote and "RETRAIN_MAX_BRIER_INCREASE" in kept.reason
    assert check_calibration(promote, 0.9, 0.1, PromotionRules()).promote  # unset: no rule
