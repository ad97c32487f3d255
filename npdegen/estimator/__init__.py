"""Fit a neural PDE to snapshot pairs: :class:`NeuralPDERegressor` (scikit-learn conventions), the
recipe space it searches (:mod:`.recipes`), the budgeted search and its report (:mod:`.search`), and
``npdegen fit X.npy Y.npy --budget 60 --out DIR`` (:mod:`.cli`).

The regressor needs scikit-learn (``pip install npdegen[learn]``); it is imported on first use, so
the recipe space and the command-line parser load without it.
"""
from .metrics import nrmse
from .recipes import KINDS, LayerKind, NotApplicable, Recipe, RecipeSpace, register
from .search import format_report
from . import flux, kernels, moments, transport  # noqa: E402,F401 - the built-in layer kinds register in KINDS

__all__ = ["NeuralPDERegressor", "nrmse", "Recipe", "RecipeSpace", "LayerKind", "NotApplicable", "KINDS", "register",
           "format_report"]


def __getattr__(name):
    if name == "NeuralPDERegressor":
        from .regressor import NeuralPDERegressor
        return NeuralPDERegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
