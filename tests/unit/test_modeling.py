"""Holdout, AUROC and the search space on tiny arrays: no stores, no mocks."""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest

from retrain.data.features import compact_features
from retrain.data.split import holdout_mask
from retrain.errors import BadInput
from retrain.training.families import (
    FAMILIES,
    auroc,
    build_model,
    count_steps,
    fit_model,
    fold_splits,
    learning_curve,
    predict_aligned,
    prepare_features,
    score_fold,
    suggest_params,
)


def test_holdout_depends_on_the_hash_only() -> None:
    hashes = pd.Series([f"{i:016x}" for i in range(0, 50_000, 7)])
    mask = holdout_mask(hashes, 0.2)
    assert 0.17 < mask.mean() < 0.23
    again = holdout_mask(pd.concat([hashes.iloc[::-1], pd.Series(["00000000000007d0"])]), 0.2)
    assert again[:-1].tolist() == mask[::-1].tolist()
    assert holdout_mask(pd.Series(["abc", "abc"]), 0.5).tolist() in ([True, True], [False, False])


def test_auroc_binary_uses_the_last_label_as_positive() -> None:
    classes = np.array(["no", "yes"])
    y = np.array(["no", "yes", "yes", "no"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    assert auroc(y, proba, classes) == 1.0
    assert auroc(y, proba, classes, positive="no") == 1.0
    assert auroc(y, proba[:, ::-1], classes) == 0.0


def test_auroc_multiclass_is_one_vs_one_macro() -> None:
    classes = np.array(["a", "b", "c"])
    y = np.array(["a", "b", "c", "a", "b", "c"])
    perfect = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.8 + 0.2 / 3
    assert auroc(y, perfect, classes) == pytest.approx(1.0)
    assert auroc(y, np.full((6, 3), 1 / 3), classes) == pytest.approx(0.5)


def mixed_frame(rows: int = 60, seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """A small table as cleaning leaves it: a numeric, an integer, a boolean and a
    categorical feature, each with some missing values, and a string label."""
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b", "c"])[np.arange(rows) % 3]
    shift = (np.arange(rows) % 3).astype(float)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows) + 2 * shift,
            "n": pd.array((shift * 3 + rng.integers(0, 2, rows)).astype(int), dtype="Int64"),
            "flag": pd.array(shift > 0, dtype="boolean"),
            "colour": np.array(["red", "green", "blue"], dtype=object)[np.arange(rows) % 3],
            "label": y,
        }
    )
    for column in ("x", "n", "flag", "colour"):
        frame.loc[rng.choice(rows, 4, replace=False), column] = None
    return frame, {"x": "numeric", "n": "integer", "flag": "boolean", "colour": "categorical"}


def cross_validate(family: str, frame: pd.DataFrame, kinds: dict, target: str = "label"):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    model = build_model(family, suggest_params(study.ask(), family), kinds)
    x, y = compact_features(prepare_features(frame, kinds)), frame[target].to_numpy()
    classes = np.unique(y)
    return [score_fold(model, x, y, split, kinds, classes) for split in fold_splits(y, 5, 3)]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_cross_validates_mixed_columns_with_missing_values(family: str) -> None:
    frame, kinds = mixed_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        scores = cross_validate(family, frame, kinds)
    assert len(scores) == 5 and all(s.cpu_seconds > 0 for s in scores)
    assert all(0.7 <= s.auroc <= 1.0 and 0.5 <= s.accuracy <= 1.0 for s in scores)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_unseen_category_and_missing_cells_get_a_prediction(family: str) -> None:
    """Fitted on the compact training matrix, asked with rows as a client sends them."""
    frame, kinds = mixed_frame()
    x = compact_features(prepare_features(frame, kinds))
    model = fit_model(build_model(family, {}, kinds), x, frame["label"].to_numpy(), kinds)
    rows = pd.DataFrame(
        {"x": [None, 1.0], "n": [None, 3], "flag": [None, True], "colour": ["purple", None]}
    )
    proba = predict_aligned(model, prepare_features(rows, kinds), np.array(["a", "b", "c"]))
    assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1.0)


def test_a_class_with_one_row_keeps_the_probability_columns_in_place() -> None:
    frame, kinds = mixed_frame(61)
    frame.loc[60, "label"] = "rare"
    scores = cross_validate("random_forest", frame, kinds)
    assert all(0.7 <= s.auroc <= 1.0 for s in scores)


def test_integer_labels_and_a_two_percent_positive_rate() -> None:
    rng = np.random.default_rng(4)
    y = (np.arange(250) % 50 == 0).astype(int)
    frame = pd.DataFrame({"x": rng.normal(size=250) + 3 * y, "label": y})
    kinds = {"x": "numeric"}
    for family in ("hgb", "logreg"):
        scores = cross_validate(family, frame, kinds)
        assert np.mean([s.auroc for s in scores]) > 0.8


def test_features_are_prepared_alike_from_typed_and_raw_rows() -> None:
    kinds = {"x": "numeric", "n": "integer", "flag": "boolean", "colour": "categorical"}
    typed = pd.DataFrame(
        {
            "x": [1.5, np.nan],
            "n": pd.array([2, None], dtype="Int64"),
            "flag": pd.array([True, None], dtype="boolean"),
            "colour": ["red", None],
            "label": ["a", "b"],
        }
    )
    raw = pd.DataFrame(
        {"x": [1.5, None], "n": [2, None], "flag": [True, None], "colour": ["red", None]}
    )
    a, b = prepare_features(typed, kinds), prepare_features(raw, kinds)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(kinds) and a["flag"].tolist()[0] == 1.0
    assert a["colour"].iloc[0] == "red" and pd.isna(a["colour"].iloc[1])


def test_the_learning_curve_covers_the_whole_fit() -> None:
    frame, kinds = mixed_frame()
    x, y = prepare_features(frame, kinds), frame["label"].to_numpy()
    classes = np.unique(y)
    for family, params in (("random_forest", {"n_estimators": 40}), ("hgb", {"max_iter": 30})):
        model = fit_model(build_model(family, params, kinds), x, y, kinds)
        curve = learning_curve(model, (x, y), (x, y), classes)
        assert curve[-1][0] == count_steps(model[-1]) and len(curve) >= 10
    model = fit_model(build_model("logreg", {"C": 1.0}, kinds), x, y, kinds)
    curve = learning_curve(model, (x, y), (x, y), classes)
    assert curve[-1][0] == int(np.max(model[-1].n_iter_))


def test_lightgbm_stops_boosting_when_held_back_rows_stop_improving() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "noise": rng.normal(size=5000)})
    y = np.where(frame["x"] + rng.normal(scale=0.5, size=5000) > 0, "yes", "no")
    kinds = {"x": "numeric", "noise": "numeric"}
    params = {"n_estimators": 2000, "learning_rate": 0.3}
    fitted = fit_model(build_model("lightgbm", params, kinds), frame, y, kinds)
    assert 1 <= fitted[-1].best_iteration_ == count_steps(fitted[-1]) < 100
    small = fit_model(build_model("lightgbm", params, kinds), frame.head(500), y[:500], kinds)
    assert count_steps(small[-1]) == 2000  # too few rows to hold a tenth back


def test_the_auto_family_is_lightgbm_where_it_loads() -> None:
    from retrain.training.families import resolve_families

    assert resolve_families(("auto",)) == (("lightgbm",), None)  # libgomp1: ./dev test
    assert resolve_families(("hgb", "logreg")) == (("hgb", "logreg"), None)


def test_the_auto_family_falls_back_to_hgb_where_lightgbm_cannot_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine without LightGBM's runtime cannot be made here: the import is made to fail."""
    import sys

    from retrain.training.families import resolve_families

    monkeypatch.setitem(sys.modules, "lightgbm", None)
    families, warning = resolve_families(("auto",))
    assert families == ("hgb",) and warning and "searching hgb" in warning


def test_unknown_family_is_refused() -> None:
    with pytest.raises(BadInput, match="unknown model family"):
        build_model("xgboost", {}, {})


def test_auroc_from_ranks_equals_scikit_learns_area() -> None:
    """Random scores, with and without ties, 2 to 5 classes, some absent from a sample: the
    same value as roc_auc_score, or the same refusal."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    compared = 0
    for case in range(400):
        k = int(rng.integers(2, 6))
        classes = np.array([f"c{i}" for i in range(k)])
        y = classes[rng.integers(0, k, int(rng.integers(8, 60)))]
        proba = rng.dirichlet(np.ones(k), size=len(y))
        if case % 2:
            proba = np.round(proba, 1) + 1e-9
            proba = proba / proba.sum(axis=1, keepdims=True)
        if len(np.unique(y)) < 2:
            continue
        try:
            if k == 2:
                expected = roc_auc_score(y == classes[1], proba[:, 1])
            else:
                expected = roc_auc_score(y, proba, multi_class="ovo", labels=classes)
        except ValueError as refusal:
            with pytest.raises(ValueError, match=re.escape(str(refusal)[:30])):
                auroc(y, proba, classes)
            continue
        assert auroc(y, proba, classes) == pytest.approx(expected, abs=1e-12)
        compared += 1
    assert compared > 300


def test_auroc_of_a_single_class_is_undefined_as_in_scikit_learn() -> None:
    from sklearn.exceptions import UndefinedMetricWarning

    y, proba = np.array(["a", "a"]), np.array([[0.4, 0.6], [0.3, 0.7]])
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):
        value = auroc(y, proba, np.array(["a", "b"]))
    assert np.isnan(value)


def test_a_holdout_label_never_seen_in_training_is_scored_not_crashed() -> None:
    from retrain.data.split import Dataset
    from retrain.training.tuning import TuneConfig, refit_best, run_trials

    frame, kinds = mixed_frame(200)
    holdout = frame.iloc[:12].copy()
    holdout.loc[holdout.index[0], "label"] = "new"
    data = Dataset(frame.iloc[12:], holdout, kinds, "label")
    config = TuneConfig(trials=1, parallel_folds=1)
    sampler = optuna.samplers.TPESampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study = run_trials(data, config, study, 1, lambda *_: None)
    refit = refit_best(data, study, seed=1)
    new = list(data.known_classes).index("new")
    assert refit.holdout_proba.shape == (12, 4) and (refit.holdout_proba[:, new] == 0).all()
    assert np.allclose(refit.holdout_proba.sum(axis=1), 1.0)
    assert 0.0 <= refit.test_auroc <= 1.0


def test_a_budget_ends_the_study_normally_with_fewer_trials() -> None:

    from retrain.data.split import Dataset
    from retrain.training.tuning import TuneConfig, count_trials, run_trials

    frame, kinds = mixed_frame(900)
    data = Dataset(frame, frame.iloc[:10], kinds, "label")
    config = TuneConfig(trials=50, parallel_folds=1)
    study = optuna.create_study(direction="maximize")
    run_trials(data, config, study, 50, lambda *_: None, deadline=time.time() + 2)
    counts = count_trials(study)
    assert 1 <= counts["trials_started"] < 50
    assert counts["trials_completed"] + counts["trials_pruned"] == counts["trials_started"]
    spent = optuna.create_study(direction="maximize")
    run_trials(data, config, spent, 5, lambda *_: None, deadline=time.time() - 1)
    assert count_trials(spent)["trials_started"] == 0


def study_with_a_ten_second_trial(refit_seconds: float = 0.0) -> optuna.Study:
    """A study holding one completed trial that took 10 s, whose refit would take
    `refit_seconds`."""
    from datetime import datetime, timedelta

    study = optuna.create_study(direction="maximize")
    end = datetime.now()
    study.add_trial(
        optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.COMPLETE, value=0.5,
            datetime_start=end - timedelta(seconds=10), datetime_complete=end, params={},
            distributions={}, user_attrs={"refit_seconds": refit_seconds},
            system_attrs={}, intermediate_values={},
        )
    )  # fmt: skip
    return study


def test_no_trial_starts_that_the_time_left_cannot_hold() -> None:
    """A finished trial took 10 s: with 5 s left the study stops after the trial running
    now; with a minute left it goes on. Past the deadline a running trial gives up after its
    round only when a completed trial exists to fall back on."""
    from retrain.training.tuning import out_of_time, stop_before_overrun

    short = study_with_a_ten_second_trial()
    short.optimize(lambda t: 1.0, n_trials=10, callbacks=[stop_before_overrun(time.time() + 5)])
    assert len(short.trials) == 2
    long = study_with_a_ten_second_trial()
    long.optimize(lambda t: 1.0, n_trials=10, callbacks=[stop_before_overrun(time.time() + 60)])
    assert len(long.trials) == 11
    assert out_of_time(long, time.time() - 1) and not out_of_time(long, time.time() + 60)
    assert not out_of_time(optuna.create_study(), time.time() - 1)


def test_the_budget_keeps_back_the_best_trials_refit() -> None:
    """A best trial whose refit on every row would take 60 s: with 70 s left the search
    stops (10 s trial + 60 s refit + the registering reserve do not fit), with 100 s it goes
    on; a running trial gives up once only the reserve is left."""
    from retrain.training.tuning import REGISTER_SECONDS, out_of_time, refit_reserve, would_overrun

    study = study_with_a_ten_second_trial(refit_seconds=60.0)
    assert refit_reserve(study) == 60.0 + REGISTER_SECONDS
    assert would_overrun(study, time.time() + 70) and not would_overrun(study, time.time() + 100)
    assert out_of_time(study, time.time() + 60) and not out_of_time(study, time.time() + 90)
    assert refit_reserve(optuna.create_study()) == 0.0


def test_a_snapshot_estimate_follows_the_rows() -> None:
    from retrain.io.tracking import estimated_csv_bytes

    frame, _ = mixed_frame(3000)
    exact = len(frame.to_csv(index=False).encode())
    assert 0.8 * exact < estimated_csv_bytes(frame) < 1.2 * exact
    assert estimated_csv_bytes(frame.iloc[:0]) == 0


def test_trials_that_are_behind_are_pruned_after_a_round_of_folds() -> None:
    from retrain.data.split import Dataset
    from retrain.training.tuning import TuneConfig, count_trials, make_pruner, run_trials

    frame, kinds = mixed_frame(90)
    data = Dataset(frame, frame.iloc[:10], kinds, "label")
    config = TuneConfig(trials=16, parallel_folds=1, families=("logreg",))
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=make_pruner(config),
    )  # fmt: skip
    logged: list[dict] = []
    run_trials(data, config, study, 16, lambda n, p, m: logged.append(m))
    counts = count_trials(study)
    assert counts["trials_pruned"] >= 1 and counts["trials_started"] == 16
    pruned = [m for m in logged if m["pruned"]]
    assert len(pruned) == counts["trials_pruned"] and all(m["folds_scored"] < 5 for m in pruned)


def test_a_large_training_set_is_tuned_on_a_stratified_sample() -> None:
    from retrain.data.split import Dataset
    from retrain.training.tuning import TuneConfig, tuning_rows

    frame, kinds = mixed_frame(600)
    data = Dataset(frame, frame.iloc[:10], kinds, "label")
    x, y = tuning_rows(data, TuneConfig(sample_rows=150))
    assert len(x) == len(y) == 150
    assert pd.Series(y).value_counts().tolist() == [50, 50, 50]
    assert len(tuning_rows(data, TuneConfig(sample_rows=None))[0]) == 600


def test_a_binary_target_with_fewer_positives_than_folds_still_tunes() -> None:
    from retrain.data.split import Dataset
    from retrain.training.tuning import TuneConfig, count_trials, run_trials

    rng = np.random.default_rng(5)
    y = np.array(["no"] * 246 + ["yes"] * 4)
    frame = pd.DataFrame({"x": rng.normal(size=250) + 3 * (y == "yes"), "label": y})
    data = Dataset(frame, frame.iloc[:10], {"x": "numeric"}, "label", positive="yes")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3))
    run_trials(data, TuneConfig(trials=2, parallel_folds=1, families=("logreg",)), study, 2, print)
    assert count_trials(study)["trials_completed"] == 2
    assert 0.5 < study.best_value <= 1.0


def test_exact_integers_and_stripped_missing_markers() -> None:
    from retrain.data.cleaning_rules import parse_cells

    cells = ["10000000000000001", "3.0", " +7 ", "-9223372036854775808", " NA", "x", "1e19",
             "2.5", "9223372036854775808", None]  # fmt: skip
    values, reasons = parse_cells(pd.Series(cells), "integer")
    assert values.tolist()[:4] == [10000000000000001, 3, 7, -(2**63)]
    assert values[4:].isna().all() and str(values.dtype) == "Int64"
    assert reasons.tolist() == ["", "", "", "", "", *["not an integer (or beyond 64 bits)"] * 4, ""]


def test_the_lightgbm_curve_sums_round_ranges_to_what_the_model_predicts() -> None:
    """One pass over the trees (raw scores summed range by range) gives, at every kept round,
    the probabilities LightGBM itself gives when told to stop at that round."""
    from sklearn.datasets import load_iris

    from retrain.training.families import boosting_stages

    x, y = load_iris(return_X_y=True, as_frame=True)
    kinds = {c: "numeric" for c in x.columns}
    for labels in (y.astype(str).to_numpy(), np.where(y == 2, "yes", "no")):
        params = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 5}
        fitted = fit_model(build_model("lightgbm", params, kinds, 0), x, labels, kinds)
        xt, booster = fitted[:-1].transform(x), fitted[-1]
        steps = list(boosting_stages(booster, xt, {5, 17, 40}))
        assert [s for s, _, _ in steps] == [5, 17, 40]
        for step, _, proba in steps:
            assert np.allclose(proba, booster.predict_proba(xt, num_iteration=step))
