"""The linearised kernel of flux-form layers (wall masks and face coefficients supplied as the runtime
supplies them) against finite differences of the compiled layer itself."""
import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.inspect import linearised_kernel

N = 24


def _layer(family):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    c, D = sp.symbols("c D", positive=True)
    return npdegen.conservation_law(c * z ** 2 / 2, z, diffusion=D, params={c: family, D: "homogeneous"})


def _theta(family, rng):
    c = 0.2 if family == "homogeneous" else rng.uniform(0.1, 0.3, N)
    return {"c": c, "D": 0.05}


@pytest.mark.parametrize("family", ["homogeneous", "heterogeneous"])
@pytest.mark.parametrize("boundary", ["periodic", "neumann", "dirichlet"])
def test_linearised_flux_kernel_is_the_jacobian_of_the_layer(family, boundary, rng):
    layer = _layer(family)
    theta = _theta(family, rng)
    net = layer.compile(n=N, spacing=1.0, layers=1, omega=1.0, boundary=boundary, dtype="float64")
    u = 1.0 + 0.5 * np.sin(2 * np.pi * (np.arange(N) + 0.5) / N) + 0.1 * rng.standard_normal(N)
    kernel = linearised_kernel(layer, u, theta, boundary=boundary)
    eps = 1e-6
    jac = np.zeros((N, N))
    for j in range(N):
        e = np.zeros(N)
        e[j] = eps
        jac[:, j] = (net.forward(u + e, theta) - net.forward(u - e, theta)) / (2 * eps)
    dense = np.zeros((N, N))
    for (o,), w in kernel.weights.items():
        for i in range(N):
            src = npdegen.grid.source(i + o, N, boundary)
            if src is not None:
                dense[i, src] += w[i]
    np.testing.assert_allclose(dense, jac, atol=1e-8)


def test_linearised_flux_kernel_reports_the_local_speed(rng):
    """Burgers flux c z^2/2, smooth positive state: the local advection speed is c u (to O(Δ))."""
    layer = _layer("homogeneous")
    x = (np.arange(256) + 0.5) / 256
    u = 1.5 + 0.5 * np.sin(2 * np.pi * x)
    kernel = linearised_kernel(layer, u, {"c": 0.2, "D": 0.0})
    np.testing.assert_allclose(kernel.advection[0], 0.2 * u, atol=0.2 * np.pi / 256 * 1.01)
