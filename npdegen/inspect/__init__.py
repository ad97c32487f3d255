"""Inspect weight physics: what a layer (or any weight matrix) does, how well a short PDE explains
it, whether it is stable, where its layers converge, and figures of all that (issue 5).

=========================  ===================================================================
:func:`kernel_moments`     moments, cumulants, explained fraction, locality of any N×N matrix
:func:`nearest_stencil`    least-squares banded stencil of a matrix and its residual
:func:`physics_report`     moments, cumulants and the effective PDE of L relaxed layers
:func:`stability`          von Neumann G(θ) (SymPy), admissible ω, positivity, Péclet, conservation;
                           for N-D and nonlinear layers :func:`step_stability` (numeric, Lax–Richtmyer);
                           for nonlocal kernels :class:`NonlocalStability` (sampled DFT / Schur bound)
:func:`linearised_kernel`  ∂G/∂z[i+o] of a (nonlinear) layer at a state: local physics per site
:func:`fixed_point`        z* = f(W z* − b) by Newton; :func:`green_steady_state` the linear one
:func:`loss_profile`       per-layer loss: how deep the network needs to be
:mod:`.plots`              stencil, moment profiles, |G(θ)|, trajectory heatmap, per-layer loss
=========================  ===================================================================

Moments carry no 1/k!: ``W_k = Σ_j r_j^k w_j``, as everywhere in npdegen. Command line:
``npdegen inspect SPEC|weights.npy [--json] [--out DIR]``.
"""
from . import plots
from .attractor import FixedPoint, FixedPointError, LossProfile, fixed_point, green_steady_state, loss_profile
from .banded import BandedFit, banded_matrix, nearest_stencil, stencil_from_moments
from .cumulants import cumulants_from_moments, moments_from_cumulants
from .matrix import layer_bias, layer_matrix, layer_weights
from .moments import KernelMoments, kernel_moments
from .report import PhysicsReport, physics_report
from .linearised import LinearisedKernel, linearised_kernel
from .matrix import step_matrix
from .stability import Stability, activation_slope, stability, stability_monitor
from .stability_nd import StepStability, step_stability
from .stability_nonlocal import NonlocalStability
from .vonneumann import amplification_factor

__all__ = ["kernel_moments", "KernelMoments", "nearest_stencil", "BandedFit", "stencil_from_moments",
           "banded_matrix", "cumulants_from_moments", "moments_from_cumulants", "physics_report",
           "PhysicsReport", "stability", "Stability", "stability_monitor", "activation_slope",
           "amplification_factor", "fixed_point", "FixedPoint", "FixedPointError", "green_steady_state",
           "loss_profile", "LossProfile", "layer_matrix", "layer_weights", "layer_bias", "plots",
           "step_stability", "StepStability", "NonlocalStability", "linearised_kernel", "LinearisedKernel", "step_matrix"]
