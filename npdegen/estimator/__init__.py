"""Fit a neural PDE to snapshot pairs: :class:`NeuralPDERegressor` (scikit-learn conventions), the
recipe space it searches (:mod:`.recipes`), the budgeted search and its report (:mod:`.search`), and
``npdegen fit X.npy Y.npy --budget 60 --out DIR`` (:mod:`.cli`). Needs scikit-learn
(``pip install npdegen[learn]``).
"""
from .metrics import nrmse
from .recipes import KINDS, LayerKind, Recipe, RecipeSpace, register
from .regressor import NeuralPDERegressor
from .search import format_report

__all__ = ["NeuralPDERegressor", "nrmse", "Recipe", "RecipeSpace", "LayerKind", "KINDS", "register",
           "format_report"]
