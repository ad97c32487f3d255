"""npdegen: neural PDE layers written in SymPy, compiled to readable NumPy kernels with exact adjoints.

A layer is one relaxation step ``z_{t+1} = (1 − ω) z_t + ω f(W z_t − b)`` whose weights ``W``
are a PDE stencil derived by SymPy. Quick start::

    import sympy as sp, numpy as np, npdegen
    q = sp.Symbol("q"); z = sp.Function("z")(q); U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R*z - U*z.diff(q) + D*z.diff(q, 2), z, activation="tanh",
                              params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    net = layer.compile(n=64, spacing=1.0, layers=8, omega=0.5)
    theta = net.init_params(seed=0)
    loss, grads = net.loss_and_grad(x, y, theta)

Pipeline (one folder each): ``spec`` → ``derive`` → ``codegen`` → ``runtime``.
"""
from ._version import __version__
from .spec import operators as ops
from .spec.spacing import spacing_symbols
from .derive.fornberg import stencil_weights
from .derive.stencil import SPACING
from .inspect import kernel_moments, stability
from .layer import NeuralPDE
from .load import load_spec
from .conservation import ConservationLaw, conservation_law
from .markov import kushner_logits, markov_chain
from .softmin import MinPlusLayer, SoftminLayer, minplus_layer, softmin_layer
from . import lse
from .lse import DenseLSE, MaxPlus
from .runtime.network import Network
from .runtime.train import TrainHistory, TrainingDiverged
from .training import train
from . import optim
from .runtime.multistart import homogeneous_fit, multistart
from .spec.parse import SpecSyntaxError, parse_expression

#: Names served on first use (module ``__getattr__``, PEP 562), so that ``import npdegen`` loads neither
#: SciPy nor scikit-learn nor Dask: ``name -> "module:attribute"`` (``module`` alone for a subpackage).
_LAZY = {
    "NonlocalPDE": "npdegen.integral:NonlocalPDE", "kernel": "npdegen.integral:kernel",
    "gaussian": "npdegen.integral:gaussian", "exponential": "npdegen.integral:exponential",
    "power_law": "npdegen.integral:power_law", "top_hat": "npdegen.integral:top_hat",
    "epanechnikov": "npdegen.integral:epanechnikov", "integral": "npdegen.integral",
    "NeuralPDERegressor": "npdegen.estimator:NeuralPDERegressor", "tasks": "npdegen.tasks",
    "distributed": "npdegen.distributed", "PointLayer": "npdegen.points:PointLayer",
    "QuadraturePDE": "npdegen.integral.quadrature:QuadraturePDE", "points": "npdegen.points",
}

__all__ = ["__version__", "NeuralPDE", "ConservationLaw", "conservation_law", "markov_chain", "kushner_logits",
           "SoftminLayer", "MinPlusLayer", "softmin_layer", "minplus_layer",
           "lse", "DenseLSE", "MaxPlus", "Network", "train", "TrainHistory", "TrainingDiverged", "stencil_weights",
           "SPACING", "spacing_symbols", "ops", "parse_expression", "SpecSyntaxError", "load_spec", "kernel_moments",
           "stability", "optim", "multistart", "homogeneous_fit", *_LAZY]


def __getattr__(name):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'npdegen' has no attribute {name!r}")
    import importlib
    module, _, attribute = target.partition(":")
    value = importlib.import_module(module)
    value = getattr(value, attribute) if attribute else value
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
