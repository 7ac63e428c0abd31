"""The out-of-time holdout on tiny frames: the newest rows, widened until every class is
there, cut at a time so no timestamp lies on both sides, rows without a time kept training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain.data.split import time_holdout
from retrain.errors import StageFailed


def days(*offsets: float) -> pd.Series:
    start = pd.Timestamp("2026-12-01")
    return pd.Series([start + pd.Timedelta(days=d) for d in offsets], name="seen_at")


def test_the_newest_share_is_the_holdout() -> None:
    times = days(*range(10))
    labels = np.array(["a", "b"] * 5)
    held = time_holdout(times, labels, share=0.2, min_rows=1, min_per_class=1)
    assert held.mask.tolist() == [False] * 8 + [True] * 2
    assert held.start == pd.Timestamp("2026-12-09", tz="UTC") and not held.widened
    assert held.rule.startswith("seen_at >= 2026-12-09") and "newest 20% of rows" in held.rule


def test_the_last_days_are_the_holdout() -> None:
    times = days(0, 1, 2, 3, 4, 5)
    labels = np.array(["a", "b", "a", "b", "a", "b"])
    held = time_holdout(times, labels, days=2, min_rows=1, min_per_class=1)
    assert held.mask.tolist() == [False, False, False, False, True, True]
    assert "last 2 days" in held.rule and "; newest 2026-" in held.rule  # the time range


def test_it_widens_until_each_class_is_there_and_says_so() -> None:
    times = days(0, 1, 2, 3, 4, 5, 6, 7)
    labels = np.array(["a", "a", "a", "a", "b", "a", "a", "a"])  # the newest b is day 4
    held = time_holdout(times, labels, share=0.25, min_rows=2, min_per_class=1)
    assert held.mask.tolist() == [False] * 4 + [True] * 4
    assert held.widened and "widened" in held.rule
    older = np.array(["b", "a", "a", "a", "a", "a", "a", "a"])  # only the oldest is b
    capped = time_holdout(times, older, share=0.25, min_rows=2, min_per_class=1)
    assert capped.mask.tolist() == [False] * 4 + [True] * 4  # never more than half


def test_a_timestamp_never_lies_on_both_sides_and_rows_without_time_train() -> None:
    times = days(0, 1, 2, 2, 2, 3)
    times[0] = pd.NaT
    labels = np.array(["a", "b", "a", "b", "a", "b"])
    held = time_holdout(times, labels, share=0.5, min_rows=1, min_per_class=1)
    # the newest half of the 5 timed rows is 3 rows, cut inside day 2: all of day 2 goes
    assert held.mask.tolist() == [False, False, True, True, True, True]


def test_no_time_at_all_holds_nothing_out() -> None:
    held = time_holdout(pd.Series([None, None], name="t"), np.array(["a", "b"]))
    assert not held.mask.any() and held.rule == "no row has a time"


def test_auto_is_time_with_a_timestamp_and_hash_without() -> None:
    from retrain.data.split import choose_holdout

    assert choose_holdout("auto", ("seen_at",), None, None).kind == "time"
    assert choose_holdout("auto", ("seen_at",), None, 7).days == 7
    assert choose_holdout("auto", (), None, None).kind == "hash"
    assert choose_holdout("hash", ("seen_at",), None, None).kind == "hash"
    assert choose_holdout("auto", ("a", "b"), "b", None).time_column == "b"
    with pytest.raises(StageFailed, match="RETRAIN_HOLDOUT=time needs a time column"):
        choose_holdout("time", (), None, None)


def test_a_dataset_split_by_time_trains_on_the_past_and_holds_out_the_newest() -> None:
    from retrain.data.split import HoldoutChoice, split_dataset

    n = 40
    cleaned = pd.DataFrame({
        "x": np.arange(n, dtype=float),
        "y": ["a", "b"] * (n // 2),
        "seen_at": [f"2026-12-{1 + i // 4:02d}" for i in range(n)],
        "row_hash": [f"{i:032x}" for i in range(n)],
    })  # fmt: skip
    choice = HoldoutChoice("time", 0.25, None, "seen_at")
    data = split_dataset(cleaned, {"x": "numeric"}, "y", choice=choice)
    assert data.train["seen_at"].max() < data.holdout["seen_at"].min()
    # 200 rows and 20 of each class are more than 40 rows hold: widened to half, and said
    assert len(data.holdout) == 20 and data.holdout_rule.startswith("seen_at >= 2026-12-06")
    assert "widened" in data.holdout_rule


def test_a_training_window_keeps_the_last_days_then_the_newest_rows() -> None:
    from retrain.data.split import TrainWindow, window_mask

    times = pd.Series(["2026-01-01", "2026-01-05", None, "2026-01-09", "2026-01-10", "2026-01-07"])
    assert window_mask(times, TrainWindow()).all()
    assert window_mask(times, TrainWindow(days=3)).tolist() == [0, 0, 0, 1, 1, 0]  # after 01-07
    newest_two = window_mask(times, TrainWindow(max_rows=2)).tolist()
    assert newest_two == [0, 0, 0, 1, 1, 0]
    unix = pd.Series([0, 86400 * 5, 86400 * 10])  # numbers are Unix seconds
    assert window_mask(unix, TrainWindow(days=6)).tolist() == [0, 1, 1]
    assert TrainWindow(days=3, max_rows=100).describe() == "last 3 days, newest 100 rows"


def test_forward_folds_train_on_the_past_and_widen_a_block_lacking_a_class() -> None:
    from retrain.training.families import forward_splits, restrict_to_window

    y = np.array(["no"] * 40 + ["yes", "no"] * 10)  # oldest first; the 2nd block lacks "yes"
    y[5] = "yes"
    order = np.arange(60)[::-1]  # row i is the i-th oldest
    splits = forward_splits(order, y, n_folds=5)
    for train, valid in splits:
        assert train.max() < valid.min()  # the past trains, the future validates
        assert set(y[valid]) == {"no", "yes"}
    assert splits[-1][1].max() == 59  # the newest rows validate last
    seconds = np.arange(60) * 86400.0  # a day per row
    train, valid = restrict_to_window(splits[-1], seconds, 20, y)
    assert train.min() == valid.min() - 19 and train.max() == valid.min() - 1
    one_class = restrict_to_window(splits[-1], seconds, 1, y)  # one "no" row: kept as it was
    assert np.array_equal(one_class[0], splits[-1][0])


def test_an_auto_window_finds_that_only_the_recent_days_tell_the_truth() -> None:
    """The concept flips on day 18 of 30: judged forward in time, a short window wins, and
    the refit trains on that window alone."""
    import optuna

    from retrain.data.split import AUTO_WINDOWS, Dataset, HoldoutChoice, holdout_of
    from retrain.training.tuning import (
        TuneConfig,
        best_window,
        compare_windows,
        refit_best,
        run_trials,
    )

    rng = np.random.default_rng(0)
    day = np.repeat(np.arange(30), 60)
    x = rng.normal(size=len(day))
    sign = np.where(day < 18, 1.0, -1.0)
    label = np.where(sign * x + rng.normal(0, 0.3, len(day)) > 0, "yes", "no")
    seen = pd.to_timedelta(day, "D") + pd.to_timedelta(rng.uniform(0, 86_400, len(day)), "s")
    frame = pd.DataFrame({"seen": pd.Timestamp("2026-11-01") + seen, "x": x, "label": label})
    choice = HoldoutChoice("time", 0.1, None, "seen")
    mask, _ = holdout_of(frame, "label", choice)
    data = Dataset(frame[~mask], frame[mask], {"x": "numeric"}, "label", "yes")
    config = TuneConfig(trials=12, families=("logreg",), parallel_folds=1, holdout=choice,
                        windows=AUTO_WINDOWS, prune=False)  # fmt: skip
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study = run_trials(data, config, study, 12, lambda *_: None)
    scores = compare_windows(data, study, config)
    assert set(scores) == set(AUTO_WINDOWS)  # every candidate, with the best trial's model
    own = study.best_trial.user_attrs["window_days"]
    assert scores[own] == study.best_value
    assert list(compare_windows(data, study, config, deadline=1.0)) == [own]  # budget spent
    chosen = best_window(scores)
    assert chosen is not None and chosen <= 3
    assert scores[chosen] > scores[None] + 0.1  # all history averages the two concepts away
    refit = refit_best(data, study, seed=1, time_column="seen", days=chosen)
    assert refit.test_auroc > 0.9


def test_the_best_window_breaks_a_tie_towards_the_shorter() -> None:
    from retrain.training.tuning import best_window

    assert best_window({None: 0.9, 7.0: 0.9, 3.0: 0.9, 1.0: 0.89}) == 3.0
    assert best_window({None: 0.95, 3.0: 0.9}) is None
