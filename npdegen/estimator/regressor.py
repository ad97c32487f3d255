r"""``NeuralPDERegressor``: fit a neural PDE to snapshot pairs, with scikit-learn's conventions.

Data are pairs ``X = u(0)``, ``Y = u(T)`` shaped ``(n_samples, *grid)`` (1-D grids: 2-D arrays,
which is also what scikit-learn's tools pass; 2-D grids: 3-D arrays). ``fit`` searches the recipe
space of :mod:`npdegen.estimator.recipes` within ``budget`` seconds (:mod:`npdegen.estimator.search`)
and keeps the simplest certified recipe with the least validation error (:mod:`npdegen.estimator.choice`);
``predict`` runs the fitted network and
returns an array shaped like ``X``.

``score(X, Y) = 1 − nRMSE`` with the mean per-sample ``nRMSE = (1/S) Σ_s ‖ŷ_s − y_s‖₂/‖y_s‖₂``
(:mod:`npdegen.estimator.metrics`): 1 is exact, 0 is no better than predicting zero; greater is
better, as scikit-learn expects of ``score`` (it is not the R² of ``RegressorMixin``; use
``sklearn.metrics.r2_score(Y.reshape(len(Y), -1), est.predict(X).reshape(len(X), -1))`` for that).

**Which nRMSE.** The search selects by the metric ``metric_`` (``metric="auto"``: the mean per-sample
nRMSE, the issue's and PDEBench's metric, unless it is ill-conditioned — some target's norm (over all
pairs given to ``fit``) below :data:`POOLED_RATIO` = 1e-8 times the largest, as on ``burgers-nu0.1``
where modes decay by ``e^{-80}`` — then the pooled ``‖Ŷ − Y‖/‖Y‖``, the metric the task tables report
there). One sample whose target is ~0 makes the mean per-sample error as large as any prediction of
that sample wants, so selecting by it ranks fits by how they predict nothing; ``score`` uses
``metric_`` too.

Needs scikit-learn (``pip install npdegen[learn]``).
"""
from __future__ import annotations

import math
import numbers
import time

import numpy as np

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils.validation import check_array, check_is_fitted
except ImportError as exc:  # pragma: no cover - scikit-learn is an optional dependency
    raise ImportError("npdegen.NeuralPDERegressor needs scikit-learn: pip install 'npdegen[learn]'") from exc

from .metrics import nrmse, sample_norms
from .recipes import ACTIVATIONS, DEFAULT_KINDS, FAMILIES, KINDS, RecipeSpace
from .search import Problem, Search, format_report, host
from .starts import spectral_estimate

__all__ = ["NeuralPDERegressor"]

_BOUNDARIES = ("periodic", "dirichlet", "neumann")
_METRICS = ("auto", "mean", "pooled")
#: ``metric="auto"`` selects by the pooled nRMSE when some target's norm is below this times the largest.
POOLED_RATIO = 1e-8


def ill_conditioned(Y, ratio: float = POOLED_RATIO) -> bool:
    """Whether the mean per-sample nRMSE of targets ``Y`` is ill-conditioned: the smallest sample norm is
    below ``ratio`` times the largest (the rule of ``examples/experiments/run.py``'s pooled rows)."""
    norms = np.sqrt(np.sum(np.reshape(Y, (len(Y), -1)) ** 2, axis=1))
    return bool(norms.min() < ratio * norms.max())


class NeuralPDERegressor(RegressorMixin, BaseEstimator):
    """Fit a neural PDE ``X = u(0) ↦ Y = u(T)`` by a budgeted search over layers.

    Parameters
    ----------
    budget : float
        Seconds for the whole search (checked between and inside recipes; see ``search_report_``).
    families, widths, depths, activations, kinds :
        The recipe space (:mod:`npdegen.estimator.recipes`): parameter families searched in the order
        homogeneous → heterogeneous → time-dependent, odd stencil widths, numbers of layers (the
        stencil kinds also try one depth between two fitted ones: :mod:`npdegen.estimator.rounds`),
        activations ``identity``/``tanh``/``reaction`` (learnable ``x + A2 x² + A3 x³``), layer kinds:
        ``"moments"`` (free stencils; N-D: the ``w^d`` box, the 9-point stencil with the cross term at
        width 3), ``"star"`` (N-D: stencils of the axes, the 5-point stencil at width 3),
        ``"nonlocal"`` (Gaussian kernels: one layer reaches any distance), ``"flux"`` (1-D Godunov
        flux-form conservation laws, Burgers; its depth comes from the CFL bound of the data, not
        from ``depths``) and ``"transport"`` (2-D self-transport by the field's induced velocity,
        vorticity form: :mod:`npdegen.integral.transport`, two parameters ``c``, ``ν``), all five by
        default (a kind that does not apply to the grid gets one report row saying why).
    boundary : ``"periodic" | "dirichlet" | "neumann"`` or one per axis.
    spacing : None (the unit domain: ``Δ = 1/n`` per axis), a number, or one per axis.
    omega : relaxation ``ω ∈ (0, 2)`` of the stencil layers (``"nonlocal"`` and ``"flux"`` use ω = 1).
    dtype, backend : compile options (``"float64"``/``"float32"``; ``"auto"``, ``"numpy"``, ``"numba"``, …).
    n_starts : L-BFGS starts per first-family recipe (warm, spectral and random starts together).
    max_iter : L-BFGS iterations per start.
    validation_fraction : share of the samples held out (drawn with ``random_state``) to choose the winner.
    random_state : int seed of the split and the random starts.
    verbose : print one line per recipe tried.
    metric : ``"auto"`` (default), ``"mean"`` or ``"pooled"``: the nRMSE the search selects by and
        ``score`` reports (module docstring); with ``"pooled"`` the kinds train on the mean squared error.

    Attributes
    ----------
    layer_, network_, theta_ : the winning :class:`~npdegen.NeuralPDE`, its compiled
        :class:`~npdegen.Network` and its parameters (NumPy arrays by name).
    recipe_ : dict of the winning recipe (kind, family, width, depth, activation, omega).
    physics_ : what the fitted layer means: :class:`~npdegen.estimator.physics.FittedPhysics` (stencils: the
        explain table with the fitted moments, per site for heterogeneous layers),
        :class:`~npdegen.estimator.flux.FluxReport` or :class:`~npdegen.estimator.kernels.KernelReport`;
        each has ``rows()`` (JSON-ready) and prints as a table.
    search_report_ : list of dicts, one per recipe tried: recipe, status (fitted / skipped / failed),
        n_params, train_nrmse, val_nrmse, seconds, starts, note (why skipped or failed); fitted rows
        also ``gain`` (per layer) and ``certified`` (:mod:`npdegen.estimator.choice`).
    certified_ : whether the winner's stability certificate holds (the network amplifies no more
        than the data grow, 1 % slack); an uncertified fit wins only when no certified fit is within
        a factor 10 of its validation nRMSE (:mod:`npdegen.estimator.choice`).
    certificate_ : the winner's certificate as a dict (gain_per_layer, amplification, allowed, certified, note).
    n_iter_ : L-BFGS iterations of the winning recipe (over its starts; at least 1).
    metric_ : the nRMSE used, ``"mean"`` or ``"pooled"`` (``validation_nrmse_`` and the report's
        nRMSE columns are in it).
    validation_nrmse_, fit_seconds_, grid_, spacing_, n_features_in_ : as named.
    """

    def __init__(self, budget=60.0, families=FAMILIES, widths=(3, 5), depths=(4, 16, 64),
                 activations=ACTIVATIONS, kinds=DEFAULT_KINDS, boundary="periodic", spacing=None, omega=0.5,
                 dtype="float64", backend="auto", n_starts=4, max_iter=300, validation_fraction=0.25,
                 random_state=0, verbose=False, metric="auto"):
        self.budget = budget
        self.families = families
        self.widths = widths
        self.depths = depths
        self.activations = activations
        self.kinds = kinds
        self.boundary = boundary
        self.spacing = spacing
        self.omega = omega
        self.dtype = dtype
        self.backend = backend
        self.n_starts = n_starts
        self.max_iter = max_iter
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose
        self.metric = metric

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ validation
    def _array(self, a, what: str, min_samples: int = 1) -> np.ndarray:
        arr = check_array(a, accept_sparse=False, dtype=(np.float64, np.float32), allow_nd=True,
                          ensure_min_samples=min_samples, input_name=what)
        if arr.ndim > 4:
            raise ValueError(f"{what} must be (n_samples, *grid) with a 1-, 2- or 3-D grid, got shape {arr.shape}")
        return np.ascontiguousarray(arr, dtype=np.float64)

    def _settings(self, grid: tuple):
        def positive(name, value, integer=False):
            kind = numbers.Integral if integer else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")
        positive("budget", self.budget)
        positive("n_starts", self.n_starts, integer=True)
        positive("max_iter", self.max_iter, integer=True)
        v = self.validation_fraction
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < 1:
            raise ValueError(f"validation_fraction must be a number in (0, 1), got {v!r}")
        if self.random_state is not None and (isinstance(self.random_state, bool)
                                              or not isinstance(self.random_state, numbers.Integral)):
            raise ValueError(f"random_state must be None or an integer seed, got {self.random_state!r}")
        if not isinstance(self.metric, str) or self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}, got {self.metric!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        bounds = (self.boundary,) if isinstance(self.boundary, str) else self.boundary
        if (not isinstance(bounds, (tuple, list)) or len(bounds) not in (1, len(grid))
                or any(b not in _BOUNDARIES for b in bounds)):
            raise ValueError(f"boundary must be one of {', '.join(_BOUNDARIES)} or one per grid axis "
                             f"({len(grid)}), got {self.boundary!r}")
        if self.spacing is None:
            spacing = tuple(1.0 / n for n in grid)
        else:
            spacing = self.spacing if isinstance(self.spacing, (tuple, list)) else (self.spacing,) * len(grid)
            if len(spacing) != len(grid) or not all(
                    isinstance(h, numbers.Real) and not isinstance(h, bool) and math.isfinite(h) and h > 0
                    for h in spacing):
                raise ValueError(f"spacing must be None, a positive number or one per grid axis ({len(grid)}), "
                                 f"got {self.spacing!r}")
            spacing = tuple(float(h) for h in spacing)
        widths = self.widths if not isinstance(self.widths, numbers.Integral) else (self.widths,)
        fitting = [w for w in widths if not isinstance(w, numbers.Integral) or min(grid) >= w]
        if not fitting:
            raise ValueError(f"found {min(grid)} feature(s) (sites) along a grid axis of {grid}: the stencil "
                             f"widths {tuple(widths)} need at least {min(widths)} sites per axis")
        dropped = [w for w in widths if w not in fitting]
        widths = tuple(fitting)
        space = RecipeSpace(kinds=self.kinds, families=self.families, widths=widths,
                            depths=(self.depths,) if isinstance(self.depths, numbers.Integral) else self.depths,
                            activations=self.activations, omega=self.omega).validate(len(grid), grid)
        return space, spacing, bounds[0] if len(bounds) == 1 else tuple(bounds), dropped

    def _split(self, n: int):
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(n)
        n_val = min(max(1, int(round(self.validation_fraction * n))), n - 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    # ------------------------------------------------------------------ API
    def fit(self, X, y):
        """Search the recipe space on snapshot pairs ``X → y`` (``y = u(T)`` shaped like ``X = u(0)``,
        ``(n_samples, *grid)``, at least 2 samples: one is held out for validation). Returns ``self``."""
        started = time.perf_counter()
        X = self._array(X, "X", min_samples=2)
        Y = y
        if Y is None:
            raise ValueError("NeuralPDERegressor requires y to be passed, but the target y is None "
                             "(Y: the snapshots u(T) of the samples X = u(0))")
        Y = self._array(Y, "Y", min_samples=2)
        if Y.shape != X.shape:
            raise ValueError(f"Y must have the shape of X, {X.shape} (pairs Y = u(T) of X = u(0) on the same "
                             f"grid), got {Y.shape}")
        grid = X.shape[1:]
        space, spacing, boundary, dropped = self._settings(grid)
        sample_norms(Y)
        train, val = self._split(X.shape[0])
        periodic = boundary == "periodic" or all(b == "periodic" for b in np.atleast_1d(boundary))
        metric = self.metric if self.metric != "auto" else "pooled" if ill_conditioned(Y) else "mean"
        problem = Problem(X[train], Y[train], X[val], Y[val], spacing, boundary, self.dtype, self.backend,
                          spectral_estimate(X[train], Y[train], spacing) if periodic else None, metric == "pooled")
        log = (lambda line: print(line, flush=True)) if self.verbose else None
        seed = 0 if self.random_state is None else int(self.random_state)
        search = Search(problem, space, self.budget, self.n_starts, self.max_iter, seed, log, started=started)
        best, report = search.run()
        self.layer_, self.network_ = best.layer, best.net
        self.theta_ = {k: host(v).copy() for k, v in best.theta.items()}
        self.recipe_ = {k: v for k, v in best.recipe.to_dict().items() if k != "warm_from"}
        self.search_report_ = [{"recipe": f"width {w}", "status": "skipped", "width": w, "seconds": 0.0,
                                "note": f"the grid {grid} has fewer than {w} sites along an axis"}
                               for w in dropped] + report
        self.validation_nrmse_, self.metric_ = best.val_nrmse, metric
        self.certified_ = bool(best.certificate is not None and best.certificate.certified)
        self.certificate_ = best.certificate.to_dict() if best.certificate is not None else None
        self.n_iter_ = max(int(best.iterations), 1)
        self.physics_ = (best.kind or KINDS[best.recipe.kind]).physics(best.layer, self.theta_, spacing, best.recipe)
        self.grid_, self.spacing_ = tuple(grid), spacing
        self.n_features_in_ = int(np.prod(grid))
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _check_grid(self, X) -> np.ndarray:
        check_is_fitted(self, "theta_")
        X = self._array(X, "X")
        if X.shape[1:] != self.grid_:
            if len(self.grid_) == 1 and X.ndim == 2:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.grid_[0]} features as input")
            raise ValueError(f"X has the grid {X.shape[1:]}, but {type(self).__name__} was fitted on {self.grid_}")
        return X

    def predict(self, X) -> np.ndarray:
        """``u(T)`` for each sample of ``X`` (shaped ``(n_samples, *grid)`` like in ``fit``); same shape."""
        X = self._check_grid(X)
        chunk = max(1, (1 << 22) // (int(np.prod(self.grid_)) * (self.network_.layers + 1)))
        out = [host(self.network_.forward(X[s:s + chunk], self.theta_)) for s in range(0, X.shape[0], chunk)]
        return np.concatenate(out).astype(np.float64, copy=False).reshape(X.shape)

    def score(self, X, y, sample_weight=None) -> float:
        """``1 − nRMSE`` of the predictions for ``X`` against ``y`` (shaped like ``X``): the mean over
        samples of ``‖ŷ_s − y_s‖₂/‖y_s‖₂``, weighted by ``sample_weight``; 1 is exact. When the fit's
        ``metric_`` is ``"pooled"``: ``‖Ŷ − Y‖/‖Y‖`` (weighted:
        ``(Σ w_s‖e_s‖² / Σ w_s‖y_s‖²)^{1/2}``)."""
        pred = self.predict(X)
        Y = self._array(y, "Y")
        if Y.shape != pred.shape:
            raise ValueError(f"Y must have the shape of X, {pred.shape}, got {Y.shape}")
        pooled = getattr(self, "metric_", "mean") == "pooled"
        if sample_weight is None:
            return 1.0 - nrmse(pred, Y, pooled=pooled)
        w = np.asarray(sample_weight, np.float64)
        if w.shape != (Y.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"sample_weight must be {Y.shape[0]} finite non-negative numbers with a positive sum")
        sq = np.sum((pred - Y).reshape(len(Y), -1) ** 2, axis=1)
        if pooled:                                  # sqrt(Σ w_s ‖e_s‖²) / sqrt(Σ w_s ‖y_s‖²)
            return 1.0 - float(np.sqrt(np.sum(w * sq) / np.sum(w * np.sum(Y.reshape(len(Y), -1) ** 2, axis=1))))
        return 1.0 - float(np.sum(w * np.sqrt(sq) / sample_norms(Y)) / w.sum())

    def report(self) -> str:
        """The search report as a text table, the winner and its physics."""
        check_is_fitted(self, "theta_")
        r = self.recipe_
        n_params = int(sum(np.size(v) for v in self.theta_.values()))
        return "\n".join([
            format_report(self.search_report_), "",
            f"winner: {r['kind']}/{r['family']}/w{r['width']}/L{r['depth']}/{r['activation']} (omega {r['omega']:g}), "
            f"{n_params} parameters, validation nRMSE{' (pooled)' if self.metric_ == 'pooled' else ''} "
            f"{self.validation_nrmse_:.4e}, "
            + ("certified stable" if self.certified_ else "NOT certified stable (no certified fit was near the best)")
            + (f" (gain per layer {self.certificate_['gain_per_layer']})" if self.certificate_ else ""),
            repr(self.layer_), "", str(self.physics_)])
