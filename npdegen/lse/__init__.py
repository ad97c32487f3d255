r"""Dense log-sum-exp layers and their Hamilton–Jacobi reading (docs/theory.md §6, MODEL.md §6).

* :class:`DenseLSE` — :math:`f(x) = \varepsilon\log\sum_j\exp((W_j\cdot x + b_j)/\varepsilon)`, max-shifted,
  with exact gradients in x, W, b and ε, the Hessian :math:`\operatorname{Cov}_\pi(W)/\varepsilon` and the
  attribution weights π = softmax(s/ε) with their entropy (= ∂f/∂ε);
* :class:`MaxPlus` — the ε → 0 (tropical, max-plus) limit with lowest-index sub-gradients;
* :func:`hopf_cole_solution`, :func:`hopf_lax`, :func:`heat_offset`, :func:`anchor_weights` — with anchors,
  :math:`f = |x|^2/(4t) - u_\varepsilon` for the Hopf–Cole solution of :math:`u_t + |\nabla u|^2 = \varepsilon\Delta u`
  (constant convention in :mod:`npdegen.lse.hopf_cole`);
* :func:`loss_and_grad`, :func:`fit_lbfgs` — training with npdegen.optim or SciPy.
"""
from .dense import Attribution, DenseLSE
from .hopf_cole import anchor_weights, heat_offset, hopf_cole_solution, hopf_lax
from .train import fit_lbfgs, layer_from_params, loss_and_grad
from .tropical import MaxPlus

__all__ = ["DenseLSE", "MaxPlus", "Attribution", "anchor_weights", "hopf_cole_solution", "hopf_lax",
           "heat_offset", "loss_and_grad", "layer_from_params", "fit_lbfgs"]
