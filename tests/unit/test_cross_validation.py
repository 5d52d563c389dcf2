"""The CV loop Tune trials run: the same held-out numbers and early stopping as ``xgb.cv``, without scoring the
training folds."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from training.model import base_params, cross_validate, fold_rows


def _world(seed: int = 5, rows: int = 3000) -> tuple[xgb.DMatrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, 6))
    labels = (matrix[:, 0] + rng.normal(scale=1.5, size=rows) > 2.5).astype(float)
    return xgb.DMatrix(matrix, label=labels), labels


def test_cross_validation_matches_xgboost_cv_on_the_held_out_folds_round_by_round() -> None:
    dall, labels = _world()
    folds = fold_rows(labels, 4, seed=3)
    params = {**base_params(5.0), "max_depth": 3, "eta": 0.3}
    seen = []
    ours = cross_validate(params, dall, folds, max_rounds=25, early_stopping_rounds=25,
                          on_round=lambda _, scores: seen.append(scores))
    theirs = xgb.cv(params, dall, num_boost_round=25, folds=folds, nfold=len(folds))
    assert len(seen) == len(theirs) == 25
    np.testing.assert_allclose([r.aucpr_mean for r in seen], theirs["test-aucpr-mean"], rtol=1e-9)
    np.testing.assert_allclose([r.auc_mean for r in seen], theirs["test-auc-mean"], rtol=1e-9)
    np.testing.assert_allclose([r.aucpr_std for r in seen], theirs["test-aucpr-std"], rtol=1e-9, atol=1e-12)
    # the result ends at the best round (the first one with the highest mean AP)
    assert len(ours) == int(np.argmax(theirs["test-aucpr-mean"].to_numpy())) + 1


def test_cross_validation_stops_early_and_keeps_the_rounds_up_to_the_best_one() -> None:
    dall, labels = _world(seed=8)
    folds = fold_rows(labels, 3, seed=1)
    params = {**base_params(1.0), "max_depth": 8, "eta": 0.9}  # overfits fast: the held-out AP peaks early
    seen: list[int] = []
    history = cross_validate(params, dall, folds, max_rounds=200, early_stopping_rounds=5,
                             on_round=lambda i, _: seen.append(i))
    theirs = xgb.cv(params, dall, num_boost_round=200, folds=folds, nfold=len(folds), early_stopping_rounds=5)
    assert len(history) == len(theirs) < 200
    assert seen[-1] == len(history) - 1 + 5  # it boosted five rounds past the best before stopping
    assert history[-1].aucpr_mean == max(r.aucpr_mean for r in history)


def test_stratified_folds_cover_every_row_once_and_keep_the_positive_share() -> None:
    _, labels = _world()
    folds = fold_rows(labels, 5, seed=2)
    held_out = np.concatenate([valid for _, valid in folds])
    assert sorted(held_out) == list(range(len(labels)))
    for train, valid in folds:
        assert not set(train) & set(valid)
        assert abs(labels[valid].mean() - labels.mean()) < 0.01
