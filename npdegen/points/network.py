r"""A compiled point network: L relaxation layers of the clustered integral operator (MODEL.md §1, §4).

.. math::  z_{t+1} = (1 − ω)\, z_t + ω\, f(Z_t), \qquad Z_t[i] = \sum_j K_{ij}(θ_t)\, z_t[j] − b_t[i],

with ``K`` the rule's operator (:mod:`.operator`), ``loss = 0.5 Σ (z_L − y)²``. Backward, with
``μ_t = ω f′(Z_t) λ_{t+1}``:

.. math::  λ_t = (1 − ω) λ_{t+1} + Kᵀ μ_t, \quad ∂/∂θ = Σ_t Σ_{ij} μ_t[i]\, ∂K_{ij}/∂θ\, z_t[j],
           \quad ∂/∂b = −Σ μ_t, \quad ∂/∂ω = Σ_t ⟨λ_{t+1}, f(Z_t) − z_t⟩ = Σ_t ⟨λ_{t+1}, z_{t+1} − z_t⟩/ω .

Parameter families (shapes): kernel parameters ``homogeneous`` ``()``, ``clustered`` ``(C,)`` (each
cluster's rows use its own value) or ``time-dependent`` ``(L,)``; the bias and activation
parameters ``homogeneous`` ``()``, ``heterogeneous`` ``(N,)``, ``clustered`` ``(C,)`` or
``time-dependent`` ``(L, N)``. States are ``(batch, N)`` or ``(N,)`` arrays, one value per point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.host_api import HostNetworkAPI
from ..runtime.tape import Tape
from .operator import PointOperator

__all__ = ["PointNetwork", "ClusterMoments"]


@dataclass(frozen=True)
class ClusterMoments:
    r"""What each cluster's kernel implies, averaged over the cluster's points ``i``:
    ``mass = Σ_j K_ij`` (``W_0``), ``first = Σ_j K_ij (q_j − q_i)`` (``W_1``, a d-vector) and
    ``second = Σ_j K_ij (q_j − q_i)(q_j − q_i)ᵀ`` (``W_2``, d × d). By ``z(q_j) ≈ z + r·∇z + ½ rᵀ∇∇z r``,
    ``Z ≈ W_0 z + W_1·∇z + ½ W_2 : ∇∇z``, so one layer (``f = id``) changes ``z`` by
    ``ω[(W_0 − 1) z + W_1·∇z + ½ W_2:∇∇z]``: ``reaction = ω(W_0 − 1)``, ``advection = ω W_1`` (transport
    with velocity ``−ω W_1`` per layer), ``diffusion = ω W_2/2`` (the tensor ``D`` of ``∇·D∇z``)."""
    mass: np.ndarray
    first: np.ndarray
    second: np.ndarray
    omega: float

    @property
    def reaction(self) -> np.ndarray:
        return self.omega * (self.mass - 1.0)

    @property
    def advection(self) -> np.ndarray:
        return self.omega * self.first

    @property
    def diffusion(self) -> np.ndarray:
        return 0.5 * self.omega * self.second

    def __repr__(self):
        def span(a):
            return f"{np.min(a):.4g}..{np.max(a):.4g}"
        return (f"ClusterMoments({len(self.mass)} clusters: W0 {span(self.mass)}, W1 {span(self.first)}, "
                f"diag W2 {span(np.diagonal(self.second, axis1=1, axis2=2))}, omega {self.omega})")


class PointNetwork(HostNetworkAPI):
    """Made by :meth:`PointLayer.compile <npdegen.points.layer.PointLayer.compile>`; the surface of
    :class:`npdegen.integral.NonlocalNetwork` that :func:`npdegen.train` uses (``init_params``,
    ``check_params``, ``forward``, ``vjp``, ``backward``, ``loss_and_grad``, ``layer_losses``, ``step``,
    ``step_vjp``), plus :meth:`cluster_moments`."""
    UNSTABLE = "omega, the kernel's mass"
    SHAPE_NOTE = ": one value per point"

    def __init__(self, layer, layers, omega, dtype, rule, train_omega, margin):
        self.layer, self.clusters = layer, layer.clusters
        self.layers, self.omega, self.rule = layers, float(omega), rule
        self.dtype, self.train_omega = np.dtype(dtype), train_omega
        self.size, self.count = self.clusters.size, self.clusters.count
        self.grid = (self.size,)
        self.families = dict(layer.families)
        self.kernel_names = tuple(p.name for p in layer.kernel.params)
        self.activation_names = layer.activation.names
        n, c, L = self.size, self.count, layers
        point = {"homogeneous": (), "heterogeneous": (n,), "clustered": (c,), "time-dependent": (L, n)}
        kern = {"homogeneous": (), "clustered": (c,), "time-dependent": (L,)}
        self.shapes = {k: (kern if k in self.kernel_names else point)[f] for k, f in self.families.items()}
        if train_omega:
            self.shapes["omega"] = ()
        self._time = any(self.families[k] == "time-dependent" for k in self.kernel_names)
        self.operator = PointOperator(self.clusters, layer.evaluator, rule, self.dtype, margin)

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed=0, scale: float = 0.01, values: dict | None = None) -> dict:
        """``values[k] + scale·N(0, 1)`` (``values`` default 0; ω: its compile value). Give values for
        kernel parameters whose range excludes 0 (``σ > 0``)."""
        rng = np.random.default_rng(seed)
        values = dict(values or {})
        unknown = set(values) - set(self.shapes)
        if unknown:
            raise ValueError(f"init_params: unknown parameter(s) {sorted(unknown)}; expected {sorted(self.shapes)}")
        missing = [k for k in self.kernel_names if k not in values]
        try:
            self.layer.evaluator.check({k: np.asarray(values.get(k, 0.0), np.float64) for k in self.kernel_names})
        except ValueError as exc:
            if missing:
                raise ValueError(f"init_params: the default 0 is outside a kernel parameter's range ({exc}); pass "
                                 f"values= for {', '.join(missing)}") from None
        theta = {}
        for k, shape in self.shapes.items():
            base = values.get(k, self.omega if k == "omega" else 0.0)
            noise = 0.0 if k == "omega" else scale * rng.standard_normal(shape)
            theta[k] = np.asarray(base + noise, self.dtype).reshape(shape)
        return self.check_params(theta)

    def _check_kernel(self, values) -> None:
        self.layer.evaluator.check(values)

    def _omega(self, theta) -> float:
        return float(theta["omega"]) if self.train_omega else self.omega

    def _values(self, theta, t) -> dict:
        return {k: np.asarray(theta[k][t] if self.families[k] == "time-dependent" else theta[k], np.float64)
                for k in self.kernel_names}

    def plan(self, theta, grad: bool = True) -> list:
        """The operator values of one call: one per layer for time-dependent kernels, else one."""
        sets = [self._values(theta, t) for t in (range(self.layers) if self._time else (0,))]
        self.operator.prepare(sets)
        return [self.operator.evaluate(v, grad) for v in sets]

    def _point_values(self, theta, k, t):
        v, fam = theta[k], self.families[k]
        if fam == "time-dependent":
            return v[t]
        return v[self.clusters.labels] if fam == "clustered" else v

    def _reduce(self, grads, k, t, per_point):
        """Add a per-point (bias, activation) or per-cluster (kernel) gradient to ``grads[k]``."""
        fam = self.families[k]
        if fam == "homogeneous":
            grads[k] += np.sum(per_point)
        elif fam == "heterogeneous":
            grads[k] += per_point
        elif fam == "clustered":
            grads[k] += per_point if k in self.kernel_names else \
                np.bincount(self.clusters.labels, per_point, minlength=self.count)
        elif k in self.kernel_names:
            grads[k][t] += np.sum(per_point)
        else:
            grads[k][t] += per_point

    # ------------------------------------------------------------------ arrays
    # ------------------------------------------------------------------ sweeps
    def _act_args(self, theta, t):
        return tuple(self._point_values(theta, k, t) for k in self.activation_names)

    def _step(self, vals, t, z, theta, omega, keep, out=None):
        act = self.layer.activation
        Z = self.operator.apply(vals, z)
        if "b" in self.families:
            Z -= self._point_values(theta, "b", t)
        pre = Z if keep and not act.linear else None
        fz = act.value(Z, self._act_args(theta, t))
        out = np.empty_like(z) if out is None else out
        np.multiply(z, 1 - omega, out=out)
        out += omega * fz
        return out, pre

    def _run(self, x2d, theta, grad=True):
        plan = self.plan(theta, grad)
        omega = self._omega(theta)
        traj = np.empty((self.layers + 1, *x2d.shape), self.dtype)
        traj[0] = x2d
        pres = []
        for t in range(self.layers):
            _, pre = self._step(plan[t if self._time else 0], t, traj[t], theta, omega, grad, out=traj[t + 1])
            pres.append(pre)
        return traj, (plan, traj, pres)

    def _adjoint(self, aux, lam, theta, first: int = 0):
        """``(∂loss/∂z_first, grads)`` from ``(plan, trajectory, pre-activations)`` and ``λ`` (consumed)."""
        plan, traj, pres = aux
        omega, act = self._omega(theta), self.layer.activation
        grads = {k: np.zeros(s, np.float64) for k, s in self.shapes.items()}
        for i in reversed(range(len(pres))):
            t = first + i
            mu = lam * omega
            if pres[i] is not None:
                args = self._act_args(theta, t)
                for k in self.activation_names:
                    self._reduce(grads, k, t, np.sum(mu * act.dparam(k, pres[i], args), axis=0, dtype=np.float64))
                mu = mu * act.slope(pres[i], args)
            if self.train_omega:
                grads["omega"] += float(np.sum(lam * (traj[i + 1] - traj[i]), dtype=np.float64)) / omega
            if "b" in self.families:
                self._reduce(grads, "b", t, -np.sum(mu, axis=0, dtype=np.float64))
            dz, kernel_grads = self.operator.backward(plan[t if self._time else 0], mu,
                                                      traj[i] if self.kernel_names else None)
            for k, g in kernel_grads.items():
                self._reduce(grads, k, t, g)
            lam *= 1 - omega
            lam += dz
        return lam, {k: g.astype(self.dtype) for k, g in grads.items()}

    # ------------------------------------------------------------------ public
    def forward(self, x, theta, trajectory: bool = False, keep: bool = False):
        """``z_L`` (or ``z_0 … z_L`` with ``trajectory``); ``keep=True`` returns a tape for :meth:`backward`."""
        x2d, single = self._states(x)
        theta = self.check_params(theta)
        if keep and trajectory:
            raise ValueError("keep=True returns a tape; ask for trajectory=True separately")
        traj, aux = self._run(x2d, theta, grad=keep)
        self._finite("forward", output=traj[-1])
        if keep:
            return Tape(net=self, output=traj[-1][0].copy() if single else traj[-1].copy(), stored=aux, theta=theta,
                        single=single, shape=tuple(x2d.shape))
        if trajectory:
            return traj[:, 0] if single else traj
        return traj[-1][0] if single else traj[-1]

    def _final(self, x2d, theta):
        traj, aux = self._run(x2d, theta)
        return traj[-1], aux

    def _check_layer(self, layer):
        if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 0 <= layer < self.layers:
            raise ValueError(f"layer must be an integer in [0, {self.layers}), got {layer!r}")

    def _one(self, theta, layer):
        return self.operator.evaluate(self._values(theta, layer), True) if self._time else self.plan(theta)[0]

    def step(self, z, theta, layer: int):
        """One layer ``z_{t+1}`` from ``z_t = z`` with the parameters of layer ``layer``."""
        z2d, single = self._states(z, "z")
        theta = self.check_params(theta)
        self._check_layer(layer)
        if self._time:
            self.operator.prepare([self._values(theta, layer)])
        out, _ = self._step(self._one(theta, layer), layer, z2d, theta, self._omega(theta), False)
        self._finite(f"step (layer {layer})", output=out)
        return out[0] if single else out

    def step_vjp(self, z, theta, cotangent, layer: int):
        """Adjoint of :meth:`step`: ``(Jᵀ·cotangent, grads)`` (grads of layer ``layer`` only)."""
        z2d, single = self._states(z, "z")
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != z2d.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, z has {np.shape(z)}")
        theta = self.check_params(theta)
        self._check_layer(layer)
        if self._time:
            self.operator.prepare([self._values(theta, layer)])
        vals = self._one(theta, layer)
        nxt, pre = self._step(vals, layer, z2d, theta, self._omega(theta), True)
        plan = [vals] * (self.layers if self._time else 1)
        dx, grads = self._adjoint((plan, np.stack([z2d, nxt]), [pre]), lam.copy(), theta, first=layer)
        self._finite(f"step_vjp (layer {layer})", input_gradient=dx, gradients=grads)
        return (dx[0] if single else dx), grads

    # ------------------------------------------------------------------ inspection
    def cluster_moments(self, theta, layer: int = 0) -> ClusterMoments:
        """Each cluster's ``W_0``, ``W_1``, ``W_2`` under this rule and these parameters, averaged over
        the cluster's points (:class:`ClusterMoments`; float64)."""
        theta = self.check_params(theta)
        self._check_layer(layer)
        values = self._values(theta, layer)
        self.operator.prepare([values])
        m0, m1, m2 = self.operator.moments(self.operator.evaluate(values, grad=False))
        labels, sizes = self.clusters.labels, self.clusters.sizes

        def mean(a):
            out = np.zeros((self.count, *a.shape[1:]))
            np.add.at(out, labels, a)
            return out / sizes.reshape(-1, *([1] * (a.ndim - 1)))
        return ClusterMoments(mean(m0), mean(m1), mean(m2), self._omega(theta))

    def __repr__(self):
        return (f"PointNetwork({self.layer.name!r}, {self.size} points in {self.clusters.dim}-D, {self.count} "
                f"clusters, rule={self.rule!r}, layers={self.layers}, omega={self.omega}, dtype={self.dtype.name!r})")
