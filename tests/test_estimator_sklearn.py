"""scikit-learn's estimator checks on NeuralPDERegressor (2-D array inputs: 1-D periodic grids).

The estimator maps snapshots ``X = u(0)`` to ``Y = u(T)`` on the same grid, so ``Y`` must be shaped
like ``X``. Most of scikit-learn's checks feed a target ``y`` of shape ``(n,)`` (or ``(n, 1)``, or
``(n, 5)``) for ``X`` of shape ``(n, p)``: such a target has no meaning for an operator regressor and is
refused with a ValueError. Hence two runs:

1. the estimator itself: every check passes except those that feed a ``y`` not shaped like ``X``
   (listed in :data:`TARGET_NOT_LIKE_X`, each failing with exactly that refusal);
2. the same checks on a test-only subclass that replaces such a target by ``Y = M(X)``, ``M`` two
   steps of a known periodic ADR scheme written here with ``np.roll`` (independent of npdegen): all
   checks, fit/predict/score/pickle/clone/idempotence/invariances included, pass on valid pairs, but
   the two that compare the prediction's shape with their own target's
   (:data:`PREDICTION_SHAPED_LIKE_Y`).
"""
import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks  # noqa: E402

from npdegen.estimator import NeuralPDERegressor  # noqa: E402

#: A tiny recipe space: each fit takes a few L-BFGS iterations (width 1 admits grids of 1-2 sites,
#: which several checks use).
TINY = dict(budget=5.0, families=("homogeneous",), widths=(1, 3), depths=(2,), activations=("identity",),
            n_starts=2, max_iter=25)

REFUSAL = "Y must have the shape of X"
#: Checks whose target y is not shaped like X (refused: REFUSAL); rerun on valid pairs in part 2.
TARGET_NOT_LIKE_X = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_regressors_train", "check_regressor_data_not_an_array",
    "check_regressor_multioutput", "check_regressors_no_decision_function", "check_regressors_int",
    "check_non_transformer_estimators_n_iter", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
]


def adr_target(X):
    """Two steps of ``z ← z + ½ (R z − U δ₁z + D δ₂z)`` on a periodic grid of ``p`` sites, Δ = 1/p
    (central differences by ``np.roll``); for ``p < 3`` the reaction alone."""
    z = np.asarray(X, np.float64)
    p = z.shape[1]
    h = 1.0 / p
    R, U, D = -0.05, 0.2 * h, 0.15 * h * h
    for _ in range(2):
        if p >= 3:
            right, left = np.roll(z, -1, axis=1), np.roll(z, 1, axis=1)
            z = z + 0.5 * (R * z - U * (right - left) / (2 * h) + D * (right - 2 * z + left) / (h * h))
        else:
            z = z + 0.5 * R * z
    return z


def _numeric(a):
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if np.all(np.isfinite(arr)) else None


class PairsFromChecks(NeuralPDERegressor):
    """Test-only: a finite numeric target not shaped like X becomes ``adr_target(X)``; anything else
    (None, NaN/inf targets, matching shapes, odd X) reaches the estimator unchanged."""

    def _pairs(self, X, y):
        x, t = _numeric(X), _numeric(y) if y is not None else None
        if (x is not None and t is not None and x.ndim == 2 and x.size and t.shape != x.shape
                and t.shape[:1] == x.shape[:1]):
            return adr_target(x)
        return y

    def fit(self, X, y):
        return super().fit(X, self._pairs(X, y))

    def score(self, X, y, sample_weight=None):
        return super().score(X, self._pairs(X, y), sample_weight)


def test_check_estimator_on_the_estimator_itself():
    """Every check passes, but those that feed a target not shaped like X, which fail with the refusal."""
    results = check_estimator(NeuralPDERegressor(**TINY), on_fail=None)
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert set(failed) == set(TARGET_NOT_LIKE_X), sorted(set(failed) ^ set(TARGET_NOT_LIKE_X))
    for name, exc in failed.items():
        reason = str(exc) + str(getattr(exc, "__cause__", "") or "") + str(getattr(exc, "__context__", "") or "")
        assert REFUSAL in reason, (name, reason[:300])
    assert sum(r["status"] == "passed" for r in results) >= 20


#: Checks that assert ``predict(X).shape == y.shape`` for their own target y (shape (n, 1) or (n, 5)):
#: an operator regressor predicts the shape of X. What else they check (a length mismatch refused,
#: lists accepted, a good score) is tested in test_estimator.py.
PREDICTION_SHAPED_LIKE_Y = {
    "check_regressors_train": "asserts predict(X).shape == y.shape for y of shape (n, 1); the estimator "
                              "predicts arrays shaped like X (test_estimator.py checks the rest)",
    "check_regressor_multioutput": "asserts predict(X).shape == y.shape for y of shape (n, 5); the estimator "
                                   "predicts arrays shaped like X",
}


@parametrize_with_checks([PairsFromChecks(**TINY)], expected_failed_checks=lambda est: PREDICTION_SHAPED_LIKE_Y)
def test_sklearn_checks_on_valid_pairs(estimator, check):
    check(estimator)


def test_adapter_fits_the_target_exactly():
    """The pairs the checks get are reachable: the tiny search recovers them (score ≈ 1)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 8))
    est = clone(PairsFromChecks(**TINY)).fit(X, X[:, 0])
    assert est.score(X, X[:, 0]) > 1 - 1e-6
    assert est.recipe_["width"] == 3
