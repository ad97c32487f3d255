r"""The quadrature-generalised update (MODEL.md §4, issue 14 item 3): a nonlocal layer evaluated at
``Q`` nodes per cell and per axis, with a basis function ``φ``.

.. math::  f_i = \sum_k Φ^k\, f\Big[\sum_l \sum_j W_{ij}^{kl}\, Φ^l z_j - b_i^k\Big], \qquad
           z_i' = (1 - ω)\, z_i + ω\, f_i / m, \quad m = \sum_k Φ^k .

**Derivation.** Start from ``∂t z = −γ (z − f[Z])`` with ``Z(q) = ∫ W(q, q′) z(q′) dq′ − b(q)``
and expand ``z(q) = Σ_j z_j φ_j(q)``, ``φ_j(q) = φ((q − q_j)/Δ)``. A ``Q``-point rule on a cell
has nodes ``d_k = x_k Δ`` and weights ``p_k Δ`` (:mod:`.basis`).

1. *The operator, one basis function at a time.* ``∫ W(q, q′) z(q′) dq′ = Σ_j z_j ∫ W(q, q′) φ_j(q′) dq′``
   exactly; the rule around ``q_j`` gives ``∫ W(q, q′) φ_j(q′) dq′ ≈ Σ_l Φ^l W(q, q_j + d_l)`` with
   ``Φ^l = p_l Δ φ(x_l)``. Evaluated at the nodes of site ``i``,
   ``Z_i^k = Z(q_i + d_k) = Σ_j Σ_l W_{ij}^{kl} Φ^l z_j − b_i^k`` with
   ``W_{ij}^{kl} = W(q_i + d_k, q_j + d_l)``: the kernel at the node-to-node displacement
   ``r = (j − i)Δ + d_l − d_k``; the quadrature weight and the basis value travel in ``Φ^l``.
2. *The activation, projected back.* Testing the relaxation equation with ``φ_i`` gives
   ``Σ_j M_{ij} ż_j = −γ (Σ_j M_{ij} z_j − ∫ φ_i f[Z] dq)``, and the rule around ``q_i`` turns the last
   integral into ``Σ_k Φ^k f[Z_i^k] = f_i`` (eq. 24).
3. *Lumped mass.* ``Σ_j M_{ij} = ∫ φ_i Σ_j φ_j ≈ ∫ φ_i`` (a partition of unity), by the same rule
   ``m = Σ_k Φ^k``; then ``ż_i = −γ (z_i − f_i/m)`` and forward Euler with ``ω = γΔt`` is the update
   above: ``z′ = (1 − ω) z + ω Σ_k ŵ_k f(Z^k)``, ``ŵ_k = Φ^k/m``.
4. *Normalisation.* Step 1 replaces ``∫ φ_j = Δ`` by ``νΔ``, ``ν = Σ_l p_l φ(x_l)``: 0.71 for the hat
   with two Gauss points, so the literal weights multiply the kernel's mass ``W_0`` by ``ν`` (a
   unit-mass diffusion kernel would lose 29 % of the field per layer). ``normalise=True`` (default)
   scales ``Φ^l`` by ``1/ν`` so that the rule integrates each basis function exactly (``Σ_l Φ^l = Δ``,
   ``Φ^l = Δ ŵ_l``); ``normalise=False`` keeps ``Φ^l = p_l Δ φ(x_l)``. Step 3 is the same either way.
5. *Q = 1* (``x_0 = 0``, ``p_0 = 1``): ``Φ^0 = Δ φ(0)`` (literal) or ``Δ``; the inner sum is the grid
   layer's rectangle rule ``Σ_j Δ W(q_j − q_i) z_j`` times ``Φ^0/Δ``, ``f_i = Φ^0 f(Z_i)`` — the standard
   update times ``Φ^0`` — and ``z′`` is exactly the step of :class:`~npdegen.integral.network.NonlocalNetwork`
   when ``Φ^0 = Δ`` (normalised, or a basis with ``φ(0) = 1``).
6. *What Q buys* (``f`` the identity). ``z′ = (1 − ω) z + ω (K_Q z − b)``, ``K_Q`` the grid layer's
   operator for ``W_Q(r) = Σ_{kl} ŵ_k ŵ_l c W(r + d_l − d_k)`` (``c`` = 1 or ``ν``): ``W`` convolved with
   the distribution ``ρ`` of ``d_l − d_k``. Its moments: ``W_0``, ``W_1`` unchanged (symmetric rules),
   ``W_2 + 2 Var_ŵ(d) W_0`` per axis — an added diffusion ``Var_ŵ(d)`` per layer (``Δ²/12`` for two
   Gauss points); and the aliases of the sampled kernel at ``±2π/Δ`` are damped by
   ``|ρ̂(2π/Δ)| = |Σ_k ŵ_k e^{2πi x_k}|²`` (0.06 for two or three Gauss points, 1 for the trapezoid).
   Kernels narrower than a cell, which the rectangle rule samples badly, gain; wide ones lose
   ``O(Δ²)`` (``examples/quadrature_update.py`` measures both). :meth:`QuadratureNetwork.truncation`
   shows ``W_Q``'s sampled moments.

**Adjoint** (``loss = ½ Σ (z_L − y)²``), with ``μ_t^k = ω ŵ_k f′(Z_t^k) λ_{t+1}``:
``λ_t = (1 − ω) λ_{t+1} + Σ_k K_kᵀ μ_t^k``; ``∂/∂θ = Σ_t Σ_k Σ_o ∂w^k_o/∂θ Σ_b μ_t^k[i] z̃_t[i + o]``;
``∂/∂b = −Σ_k μ^k``; ``∂/∂ω = Σ_t ⟨λ_{t+1}, (z_{t+1} − z_t)/ω⟩``; ``∂/∂ρ = Σ_k ω ŵ_k λ ∂f/∂ρ(Z^k)``.
Node ``k`` applies the weights ``w^k_o = Σ_l c ŵ_l Δ W(oΔ + d_l − d_k)`` (``∂w/∂θ`` from SymPy's
``∂W/∂θ`` at the same points: the grid layer's :class:`~npdegen.integral.sample.KernelSampler` at
fractional offsets) with any of the grid layer's operators (:mod:`.apply`): stencil, dense, or FFT
(one transform of ``z`` shared by all nodes). A linear ``f`` collapses the nodes into ``K_Q``: one
operator per layer and the grid layer's Fourier-space path. ``b_i^k = b_i`` (the bias is constant
on a cell); a heterogeneous ``θ_i`` holds on every node of cell ``i``; ``W(q, r)`` is evaluated at
``q = q_i + d_k``. In ``d`` axes the nodes are the tensor product (``Q^d``).
"""
from __future__ import annotations

import numpy as np

from .apply import FFTOperator, dot, irfftn, rfftn
from .basis import node_set
from .layer import NonlocalPDE
from .network import NonlocalNetwork
from .sample import box_offsets, sampled_moments

__all__ = ["QuadraturePDE", "QuadratureNetwork"]


class QuadraturePDE:
    """A :class:`~npdegen.integral.layer.NonlocalPDE` evaluated by the quadrature-generalised update.

    Parameters
    ----------
    layer : the nonlocal layer (kernel, field, activation, parameter families, bias).
    Q : nodes per cell and axis, 1, 2 or 3.
    rule : ``"gauss"`` (Gauss–Legendre) or ``"newton-cotes"`` (midpoint, trapezoid, Simpson).
    basis : ``"hat"``, ``"bspline"`` (cubic), ``"gaussian"`` (width ½ cell) or a
        :class:`~npdegen.integral.basis.Basis` (``Basis.bspline(2)``, ``Basis.gaussian(0.3)``).
    normalise : scale ``Φ`` so that the rule integrates each basis function exactly (module
        docstring, step 4); ``False`` keeps the literal ``Φ^k = p_k Δ φ(x_k)``.
    """

    def __init__(self, layer, Q: int = 2, rule: str = "gauss", basis="hat", normalise: bool = True):
        if not isinstance(layer, NonlocalPDE):
            raise TypeError(f"layer must be an npdegen NonlocalPDE, got {type(layer).__name__}")
        if not isinstance(normalise, bool):
            raise TypeError(f"normalise must be True or False, got {normalise!r}")
        self.layer, self.normalise = layer, normalise
        self.nodes = node_set(Q, rule, basis, layer.dim)
        self.Q, self.rule, self.basis = self.nodes.Q, rule, self.nodes.basis

    def compile(self, n, backend=None, **options):
        """A runnable network; ``options`` as for :meth:`NonlocalPDE.compile` (``spacing``, ``layers``,
        ``omega``, ``boundary``, ``dtype``, ``method``, ``reach`` — in cells of the node-to-node
        kernel —, ``train_omega``, ``threads``, ``allow_unstable``): a :class:`QuadratureNetwork`.

        ``backend="numpy" | "numba" | "cupy"`` generates the step kernels instead (the kernel sampled
        out to ``reach``, which is then required: :meth:`step_layer`); ``options`` are those of
        :meth:`npdegen.NeuralPDE.compile`. Both take the same ``theta``."""
        if backend is None:
            return QuadratureNetwork(self, self.layer.compile(n, **options))
        if options.pop("method", "stencil") not in ("stencil", "auto"):
            raise ValueError("generated quadrature kernels sample the kernel into a stencil: method must be "
                             "'stencil' (or leave backend=None for the FFT and dense operators)")
        if options.get("reach") is None:
            raise ValueError("backend=... generates a stencil of fixed width: give reach= (offsets per axis)")
        return self.step_layer(options.pop("reach")).compile(n, backend=backend, **options)

    def step_layer(self, reach):
        """This update with the kernel sampled out to ``reach`` as a step-IR layer
        (:class:`~npdegen.integral.quadrature_step.QuadratureStepPDE`): generated NumPy, numba and
        CUDA kernels, forward and adjoint."""
        from .quadrature_step import QuadratureStepPDE
        return QuadratureStepPDE(self, reach)

    def moments(self, max_order: int = 4):
        """The kernel's exact moments (the continuous ``W``, before the update's smoothing)."""
        return self.layer.moments(max_order)

    def explain(self, max_order: int = 4):
        return self.layer.explain(max_order)

    def __getstate__(self):
        return {"args": (self.layer, self.Q, self.rule, self.basis, self.normalise)}

    def __setstate__(self, state):
        self.__init__(*state["args"])

    def __repr__(self):
        return (f"QuadraturePDE({self.layer.name!r}: Q={self.Q}, rule={self.rule!r}, basis={self.basis.name}, "
                f"normalise={self.normalise})")


class _NodeFFT(FFTOperator):
    """The FFT operator applied with one set of weights per node, sharing the transform of ``z`` (and
    the inverse transform of the adjoint's sum)."""

    def forward_nodes(self, plans, z):
        zhat = rfftn(self._extend(z), self.periods, self.workers)
        return [self._restrict(irfftn(zhat * khat_conj, self.periods, self.workers)) for _, khat_conj in plans], zhat

    def backward_nodes(self, plans, mus, z, zhat, want: bool):
        """``(Σ_k K_kᵀ μ_k, [Ĉ_k] or None)`` (``Ĉ_k`` as in :meth:`FFTOperator.backward`)."""
        if want and zhat is None:
            zhat = rfftn(self._extend(z), self.periods, self.workers)
        acc, spectra = None, []
        for (khat, _), mu in zip(plans, mus):
            muhat = rfftn(mu, self.periods, self.workers)
            term = muhat * khat
            acc = term if acc is None else acc + term
            if want:
                c = np.conj(muhat) * zhat
                spectra.append(c.reshape(-1, *c.shape[c.ndim - self.d:]).sum(axis=0, dtype=np.complex128))
        return self._fold(irfftn(acc, self.periods, self.workers)), (spectra if want else None)


class _NodePlan:
    """One call's operator and per-layer ``(prepared, ∂w/∂θ)``: one set (``collapsed``) or one per node."""

    def __init__(self, op, layers, collapsed):
        self.op, self.layers, self.collapsed = op, layers, collapsed

    def layer(self, t):
        return self.layers[t] if len(self.layers) > 1 else self.layers[0]


class QuadratureNetwork(NonlocalNetwork):
    """Made by :meth:`QuadraturePDE.compile`: the surface of
    :class:`~npdegen.integral.network.NonlocalNetwork` (``init_params``, ``check_params``,
    ``forward``, ``vjp``, ``backward``, ``loss_and_grad``, ``step``, ``step_vjp``, …), plus
    :meth:`update` (``f_i`` of eq. 24), :meth:`smearing` and the node weights ``Phi``."""

    def __init__(self, quadrature: QuadraturePDE, base: NonlocalNetwork):
        super().__init__(base.layer, base.grid, base.spacing, base.layers, base.omega, base.boundaries,
                         base.dtype.name, base.method, base.fixed_reach, base.train_omega, base.threads)
        self.recipe = base.recipe
        self.quadrature, self.nodes = quadrature, quadrature.nodes
        self.cell = float(np.prod(self.spacing))
        self.scale = 1.0 if quadrature.normalise else self.nodes.mass        # c of the module docstring
        self.weights = [float(w) for w in self.nodes.weights]                # ŵ_k
        #: ``Φ^k`` of eq. 24 (physical units) and the lumped mass ``m = Σ_k Φ^k``.
        self.Phi = self.nodes.weights * self.scale * self.cell
        self.mass = float(np.sum(self.Phi))
        self._collapse = self.layer.activation.linear or self.nodes.count == 1

    # ------------------------------------------------------------------ weights per node
    def _reach(self, theta) -> tuple:
        reach = super()._reach(theta)
        if self.fixed_reach is not None or self.nodes.count == 1:
            return reach
        return tuple(min(k + 1, lim) for k, lim in zip(reach, self._limits()))   # |d_l − d_k| < Δ

    def _operator(self, method, reach):
        if method == "fft" and not self._site and (method, reach) not in self._operators:
            self._operators[(method, reach)] = _NodeFFT(self.grid, self.boundaries, reach, self.dtype, self.threads)
        return super()._operator(method, reach)

    def _node_positions(self, k):
        if self._positions is None:
            return None
        return [p + self.nodes.nodes[k, a] * self.spacing[a] for a, p in enumerate(self._positions)]

    def _node_weights(self, offsets, values, derivative: bool) -> list:
        """``w^k_o = Σ_l c ŵ_l Δ W(oΔ + d_l − d_k)`` for every node ``k`` (or ``{name: ∂w^k/∂θ}``)."""
        sampler = self.layer.sampler
        fn = sampler.dweights if derivative else sampler.weights
        sites = self.grid if self._site else None
        cache, out = {}, []
        for k in range(self.nodes.count):
            positions = self._node_positions(k)
            acc = None
            for l in range(self.nodes.count):
                delta = self.nodes.nodes[l] - self.nodes.nodes[k]
                key = tuple(delta) if positions is None else (k, l)
                if key not in cache:
                    cache[key] = fn(offsets + delta[None, :], self.spacing, values, sites, positions)
                factor = self.scale * self.weights[l]
                term = cache[key]
                if derivative:
                    acc = {n: factor * v + (0 if acc is None else acc[n]) for n, v in term.items()}
                else:
                    acc = factor * term if acc is None else acc + factor * term
            out.append(acc)
        return out

    def sampled_weights(self, theta, layer: int = 0) -> tuple:
        """``(offsets, w)`` of ``K_Q`` for step ``layer`` (the nodes collapsed, module docstring step 6):
        with one slope ``s`` at every node the linearised update is ``(1 − ω) z + ω s K_Q z``. For
        :func:`npdegen.stability`."""
        theta = self.check_params(theta)
        self._check_layer(layer)
        offsets = box_offsets(self._reach(theta))
        values = self._values(theta, layer if self._time else 0)
        return offsets, self._collapsed(self._node_weights(offsets, values, False), False)

    def _collapsed(self, per_node: list, derivative: bool):
        """``Σ_k ŵ_k w^k``: the weights of ``K_Q`` (module docstring, step 6)."""
        if derivative:
            return {n: sum(w * d[n] for w, d in zip(self.weights, per_node)) for n in per_node[0]}
        return sum(w * v for w, v in zip(self.weights, per_node))

    def plan(self, theta, collapse: bool | None = None) -> _NodePlan:
        collapse = self._collapse if collapse is None else collapse
        reach = self._reach(theta)
        op = self._operator(self._choose(reach), reach)
        fft = op.name == "fft"
        layers = []
        for t in (range(self.layers) if self._time else (0,)):
            values = self._values(theta, t)
            ws = self._node_weights(op.offsets, values, False)
            dws = self._node_weights(op.offsets, values, True)
            if collapse:
                dw = self._collapsed(dws, True)
                layers.append((op.prepare(self._collapsed(ws, False)), {n: op.wrap(v) for n, v in dw.items()}
                               if fft else dw))
            else:
                layers.append(([op.prepare(w) for w in ws],
                               [{n: op.wrap(v) for n, v in d.items()} if fft else d for d in dws]))
        return _NodePlan(op, layers, collapse)

    # ------------------------------------------------------------------ sweeps (per node)
    def _spectral(self, plan) -> bool:
        return plan.collapsed and super()._spectral(plan)

    def _fast_sweep(self, plan) -> bool:
        return plan.collapsed and super()._fast_sweep(plan)

    def _node_states(self, plan, t, z, theta) -> tuple:
        """``([Z^k], saved)``: the pre-activations at every node of every site."""
        prepared, _ = plan.layer(t)
        if plan.op.name == "fft":
            Zs, saved = plan.op.forward_nodes(prepared, z)
        else:
            Zs, saved = [plan.op.forward(p, z)[0] for p in prepared], None
        b = self._bias(theta, t)
        if b is not None:
            for Z in Zs:
                Z -= b
        return Zs, saved

    def _step(self, plan, t, z, theta, omega, keep, out=None):
        if plan.collapsed:
            return super()._step(plan, t, z, theta, omega, keep, out)
        act = self.layer.activation
        Zs, saved = self._node_states(plan, t, z, theta)
        args = self._act_args(theta, t)
        acc = np.zeros_like(z)
        for w, Z in zip(self.weights, Zs):
            acc += w * act.value(Z, args)
        out = np.empty_like(z) if out is None else out
        np.multiply(z, 1 - omega, out=out)
        acc *= omega
        out += acc
        return out, saved, (Zs if keep else None)

    def _layer_adjoint(self, plan, traj, saved, pres, lam, theta, first: int = 0):
        if plan.collapsed:
            return super()._layer_adjoint(plan, traj, saved, pres, lam, theta, first)
        act, omega = self.layer.activation, self._omega(theta)
        grads = {k: np.zeros(s, np.float64) for k, s in self.shapes.items()}
        want, fft = bool(self.kernel_names), plan.op.name == "fft"
        spectra = None                 # FFT: Σ_t Ĉ_t^k per node, contracted once (one kernel in every layer)
        for i in reversed(range(len(saved))):
            t = first + i
            args = self._act_args(theta, t)
            mus = []
            for w, Z in zip(self.weights, pres[i]):
                mu = lam * (omega * w)
                for k in act.names:
                    self._reduce(grads, k, t, np.sum(mu * act.dparam(k, Z, args), axis=0, dtype=np.float64))
                if not act.linear:
                    mu *= act.slope(Z, args)
                mus.append(mu)
            if self.train_omega:
                grads["omega"] += dot(lam, traj[i + 1] - traj[i]) / omega
            if "b" in self.families:
                self._reduce(grads, "b", t, -sum(np.sum(mu, axis=0, dtype=np.float64) for mu in mus))
            prepared, dws = plan.layer(t)
            if fft:
                dz, corr = plan.op.backward_nodes(prepared, mus, traj[i], saved[i], want)
                if want:
                    spectra = corr if spectra is None else [a + c for a, c in zip(spectra, corr)]
            else:
                dz = np.zeros_like(lam)
                for p, mu, dw in zip(prepared, mus, dws):
                    dzk, corr = plan.op.backward(p, mu, traj[i], None, want)
                    dz += dzk
                    for k, v in dw.items():
                        self._reduce(grads, k, t, dot(v, corr) if corr.ndim == 1 else np.sum(v * corr, axis=-1))
            lam *= 1 - omega
            lam += dz
        if spectra is not None:
            for chat, dw in zip(spectra, plan.layer(first)[1]):
                for k, v in dw.items():
                    grads[k] += plan.op.parseval(v, chat)
        return lam, {k: g.astype(self.dtype) for k, g in grads.items()}

    # ------------------------------------------------------------------ eq. 24 and inspection
    def update(self, z, theta, layer: int = 0):
        """``f_i = Σ_k Φ^k f(Z_i^k)`` of eq. 24 for the state ``z`` with the parameters of ``layer``
        (the relaxation step uses ``f_i / m``, :attr:`mass`)."""
        z2d, single = self._states(z, "z")
        theta = self.check_params(theta)
        self._check_layer(layer)
        Zs, _ = self._node_states(self.plan(theta, collapse=False), layer, z2d, theta)
        args = self._act_args(theta, layer)
        out = np.zeros_like(z2d)
        for phi, Z in zip(self.Phi, Zs):
            out += float(phi) * self.layer.activation.value(Z, args)
        self._finite(f"update (layer {layer})", output=out)
        return out[0] if single else out

    def smearing(self) -> tuple:
        """``2 Var_ŵ(d)`` per axis (physical units²): what the update adds to ``W_2/W_0`` (step 6)."""
        return tuple(2 * v * dk ** 2 for v, dk in zip(self.nodes.variance, self.spacing))

    def truncation(self, theta, max_order: int = 4) -> dict:
        """``{order: (exact, sampled, sampled − exact)}``: the moments of the collapsed operator ``K_Q``
        next to the continuous kernel's; at second order the difference is the update's smoothing
        :meth:`smearing` (times ``W_0``) plus the grid layer's own sampling error."""
        exact = super().truncation(theta, max_order)
        theta = self.check_params(theta)
        offsets = box_offsets(self._reach(theta))
        w = self._collapsed(self._node_weights(offsets, self._values(theta, 0), False), False)
        sampled = sampled_moments(w, offsets, self.spacing, max_order)
        return {order: (e, sampled[order], sampled[order] - e) for order, (e, _, _) in exact.items()}

    def __reduce__(self):
        if self.recipe is None:
            raise TypeError("this QuadratureNetwork was not made by QuadraturePDE.compile and cannot be pickled")
        return (_compile, (self.quadrature, self.recipe))

    def __repr__(self):
        return (f"QuadratureNetwork({self.layer.name!r}, Q={self.nodes.Q}, rule={self.nodes.rule!r}, "
                f"basis={self.nodes.basis.name}, n={self.n}, layers={self.layers}, method={self.method!r})")


def _compile(quadrature, options):
    return quadrature.compile(**options)
