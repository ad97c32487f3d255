"""Nonlocal (integral-operator) layers on a grid (issue 14 items 1–2).

Kernel functions ``W(r)`` / ``W(q, r)`` written in SymPy, with exact moments and the list of those
that diverge (:mod:`.kernel`, :mod:`.moments`), and the layer ``Z = ∫ W(q, r) z(q + r) dr − b``
sampled into a stencil or applied by FFT, with its exact adjoint (:mod:`.layer`, :mod:`.apply`).
(The package is not called ``nonlocal``: that is a Python keyword.)
"""
from .kernel import Kernel, epanechnikov, exponential, gaussian, kernel, power_law, top_hat
from .layer import NonlocalPDE
from .moments import KernelMoments
from .network import NonlocalNetwork
from .basis import Basis
from .quadrature import QuadratureNetwork, QuadraturePDE
from .transport import TransportNetwork, transport_network

__all__ = ["Kernel", "KernelMoments", "NonlocalPDE", "NonlocalNetwork", "QuadraturePDE", "QuadratureNetwork", "Basis", "TransportNetwork", "transport_network", "kernel", "gaussian", "exponential",
           "power_law", "top_hat", "epanechnikov"]
