r"""Vectorisable transcendental functions for the numba kernels: ``tanh`` (float64), ``exp`` and ``log``.

numba compiles ``math.tanh``, ``math.exp`` and ``math.log`` to a call of the C library per value:
the loop around it is not vectorised (PyPI's llvmlite has no vector math library). A float64 layer
with a tanh activation ran ~3× slower on numba than on NumPy, whose ufuncs are vectorised, and the
soft-min layer (:mod:`npdegen.derive.softmin`: ``exp`` per access, ``log`` per site, in the forward
and the adjoint) ran at 0.6× PyTorch eager. The helpers here are written with arithmetic, ``floor``,
selects and bit moves only, which the compiler vectorises.

``tanh`` (:class:`Tanh64`, :data:`VTANH_SOURCE`), float64, within 3 units in the last place of
float64 (measured against ``math.tanh``; tests/test_vector_math.py allows 4):

* ``a = min(|x|, 19)`` (``tanh`` is ``±1`` in float64 beyond ``a ≈ 18.7``; NaN passes through);
* ``a < 0.4``: ``tanh a = −m/(2 + m)`` with ``m = expm1(−2a)`` from its Taylor series (degree 17,
  ``|2a| ≤ 0.8``: truncation ``< 3e-18``), no cancellation;
* otherwise ``tanh a = (1 − e)/(1 + e)``, ``e = exp(−2a) = 2^{−k} exp(r)``: Cody–Waite reduction
  ``r = t − k ln 2`` (``|r| ≤ ln2/2``), ``exp(r)`` by its Taylor series (degree 13, ``< 5e-18``),
  ``2^{−k}`` (``0 ≤ k ≤ 55``) as a product of exact powers of two picked by the bits of ``k``;
* both branches are computed and one is selected (branch-free, so the loop vectorises).

Its derivative is ``1 − Tanh64(x)²`` (:meth:`Tanh64.fdiff`): the adjoint uses the identity of the
true tanh, exact to the same few ulp. The numba printers write ``_vtanh(x)``; :data:`VTANH_SOURCE`
is the ``@njit`` helper the templates define when a kernel uses it.

``exp`` and ``log`` (:func:`exp_log_source`, float32 and float64; the numba printer writes every
``exp``/``log`` of a kernel as ``_vexp``/``_vlog`` unless ``activations="exact"``):

* ``_vexp(x)``: ``a = x`` clamped to ``[−746, 710]`` (float32: ``[−105, 89]``, beyond which ``exp`` is
  0 or overflows; NaN passes), ``k = ⌊a/ln 2 + ½⌋``, ``r = a − k ln 2`` (Cody–Waite, ``ln 2`` split in
  a short high part and a low part, ``|r| ≤ ln2/2``), ``exp(r)`` by its Taylor series (degree 13,
  truncation ``< 5e-18``; float32: degree 7, ``< 8e-9``), times ``2^h·2^{k−h}``, ``h = ⌊k/2⌋``: two
  exact powers of two made from the exponent bits (:func:`_pow2`), so subnormal results are rounded
  once and ``2^k`` never leaves the normal range;
* ``_vlog(x)``: ``x = m·2^e`` from the bits (subnormals scaled by ``2^54``, float32 ``2^25``, first),
  ``m ∈ [√½, √2)``, ``f = m − 1`` (exact), ``s = f/(2 + f)``, ``log(1 + f) = 2 atanh s
  = f − (f²/2 − s(f²/2 + R))``, ``R = Σ_{n≥1} 2 s^{2n}/(2n + 1)`` (``|s| ≤ 0.172``; 11 terms,
  truncation ``< 1e-18`` relative; float32: 5 terms, ``< 3e-10``), ``log x = e·ln2_hi + (log(1 + f)
  + e·ln2_lo)`` (fdlibm's arrangement); ``log 0 = −∞``, ``log x = NaN`` for ``x < 0``, ``log ∞ = ∞``.

Measured against ``math.exp``/``math.log`` (float64 references, the error in units of the spacing of
the result's dtype at the reference; subnormal results count in subnormal steps), compiled with the
kernels' flags (FMA contraction): float32, every 61st bit pattern (all binades, both signs): ``exp``
0.92 ulp, ``log`` 0.83 ulp; float64, 7·10⁶ arguments over the whole range: ``exp`` and ``log`` 1.0
ulp. tests/test_vector_math.py asserts ≤ 1 ulp (every 509th float32), the special values
(``±0, ±∞``, NaN, negative arguments of ``log``), and that the compiled loop is packed SIMD
arithmetic with no libm call.
The derivatives are those of the true functions (``d exp = exp``, ``d log = 1/x``), exact to the
same few ulp.
"""
from __future__ import annotations

from math import factorial

import sympy as sp

__all__ = ["Tanh64", "vector_activation", "VTANH_SOURCE", "exp_log_source", "vector_sources"]


class Tanh64(sp.Function):
    """``tanh`` computed by :data:`VTANH_SOURCE` in float64 numba kernels."""
    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return sp.tanh(arg)

    def fdiff(self, argindex=1):
        return 1 - Tanh64(self.args[0]) ** 2


def vector_activation(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every ``tanh`` replaced by :class:`Tanh64`."""
    return expr.replace(sp.tanh, Tanh64)


def _horner(coefficients, var: str) -> str:
    out = repr(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = f"{c!r} + {var} * ({out})"
    return out


_EXPM1 = [0.0] + [1.0 / factorial(n) for n in range(1, 18)]     # expm1(t) = sum t^n/n!, n = 1..17
_EXP = [1.0 / factorial(n) for n in range(0, 14)]              # exp(r), degree 13
#: ln 2 split for the Cody–Waite reduction: the high part has few bits, so k·LN2_HI is exact.
LN2_HI, LN2_LO = 0.693145751953125, 1.4286068203094172321e-06

VTANH_SOURCE = f'''
@numba.njit(inline="always", **_JIT)
def _vtanh(x):
    """tanh(x) in float64 with arithmetic, floor and selects only (npdegen.codegen.vector_math)."""
    a = -x if x < 0.0 else x
    a = 19.0 if a > 19.0 else a                  # NaN passes (NaN > 19 is False)
    t = -2.0 * a
    m = t * ({_horner(_EXPM1[1:], "t")})          # expm1(t), |t| <= 0.8 on this branch
    small = -m / (2.0 + m)
    k = math.floor(t * -1.4426950408889634 + 0.5)   # exp(t) = 2^-k exp(r), 0 <= k <= 55
    r = (t + k * {LN2_HI!r}) + k * {LN2_LO!r}
    e = {_horner(_EXP, "r")}
    for b in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0):       # times 2^-k, bit by bit
        h = math.floor(k * 0.5)
        e = e * (2.0 ** -b if k - 2.0 * h > 0.5 else 1.0)
        k = h
    large = (1.0 - e) / (1.0 + e)
    y = small if a < 0.4 else large
    return -y if x < 0.0 else y
'''


# ---------------------------------------------------------------------------------------- exp and log
#: Bit moves for the exp/log helpers: ``_pow2(k) = 2**k`` for an integral float ``k`` in the normal
#: exponent range (the bits ``(k + bias) << mantissa``), ``_split(x) = (m, e)`` with ``x = m·2**e``,
#: ``m ∈ [1, 2)``, for a positive normal ``x`` (the exponent field and the mantissa with the bias).
BITS_SOURCE = '''
from llvmlite import ir as _llir
from numba.core import types as _nbtypes
from numba.extending import intrinsic as _intrinsic


def _float_layout(t):
    """(integer width, exponent bias, mantissa bits) of a float type, or None."""
    return {_nbtypes.float64: (64, 1023, 52), _nbtypes.float32: (32, 127, 23)}.get(t)


@_intrinsic
def _pow2(typingctx, k):
    """2**k for an integral float k in the normal exponent range (npdegen.codegen.vector_math)."""
    layout = _float_layout(k)
    if layout is None:
        return None
    width, bias, shift = layout

    def codegen(context, builder, sig, args):
        ity = _llir.IntType(width)
        i = builder.add(builder.fptosi(args[0], ity), _llir.Constant(ity, bias))
        return builder.bitcast(builder.shl(i, _llir.Constant(ity, shift)), args[0].type)
    return k(k), codegen


@_intrinsic
def _split(typingctx, x):
    """(m, e), x = m 2**e, m in [1, 2), for a positive normal float x (npdegen.codegen.vector_math)."""
    layout = _float_layout(x)
    if layout is None:
        return None
    width, bias, shift = layout

    def codegen(context, builder, sig, args):
        ity = _llir.IntType(width)
        b = builder.bitcast(args[0], ity)
        m = builder.or_(builder.and_(b, _llir.Constant(ity, (1 << shift) - 1)), _llir.Constant(ity, bias << shift))
        e = builder.and_(builder.lshr(b, _llir.Constant(ity, shift)), _llir.Constant(ity, (1 << (width - 1 - shift)) - 1))
        e = builder.sub(e, _llir.Constant(ity, bias))
        return context.make_tuple(builder, sig.return_type,
                                  (builder.bitcast(m, args[0].type), builder.sitofp(e, args[0].type)))
    return _nbtypes.UniTuple(x, 2)(x), codegen
'''

#: Per dtype: exp clamp, Taylor degree of exp(r), ln 2 split for exp (k·hi exact for every k the
#: clamp allows), subnormal scaling of log, number of atanh terms in R, ln 2 split for log.
_LAYOUT = {
    "float64": dict(lo=-746.0, hi=710.0, exp_degree=13, exp_ln2=(0.693145751953125, 1.4286068203094172321e-06),
                    sub_scale=54, log_terms=11, log_ln2=(6.93147180369123816490e-01, 1.90821492927058770002e-10)),
    "float32": dict(lo=-105.0, hi=89.0, exp_degree=7, exp_ln2=(0.693359375, -2.12194440e-4),
                    sub_scale=25, log_terms=5, log_ln2=(0.693359375, -2.12194440e-4)),
}
_TINY = {"float64": 2.2250738585072014e-308, "float32": 1.1754943508222875e-38}     # smallest normal

_EXP_LOG_TEMPLATE = '''

@numba.njit(inline="always", **_JIT)
def _vexp(x):
    """exp(x) ({dtype}) with arithmetic, floor, selects and bit moves (npdegen.codegen.vector_math)."""
    a = _F({lo}) if x < _F({lo}) else x          # NaN passes
    a = _F({hi}) if a > _F({hi}) else a
    k = numpy.floor(a * _F(1.4426950408889634) + _F(0.5))
    k = _F(0.0) if k != k else k                 # NaN: any exponent (r is NaN)
    r = (a - k * _F({ehi})) - k * _F({elo})
    p = {exp_poly}
    h = numpy.floor(k * _F(0.5))
    return p * _pow2(h) * _pow2(k - h)


@numba.njit(inline="always", **_JIT)
def _vlog(x):
    """log(x) ({dtype}) with arithmetic, selects and bit moves (npdegen.codegen.vector_math)."""
    sub = x < _F({tiny})
    m, e = _split(x * _F({scale}) if sub else x)
    e = e - _F({shift}) if sub else e
    big = m > _F(1.4142135623730951)
    m = m * _F(0.5) if big else m
    e = e + _F(1.0) if big else e
    f = m - _F(1.0)
    s = f / (_F(2.0) + f)
    z = s * s
    R = z * ({log_poly})
    hfsq = _F(0.5) * f * f
    y = e * _F({lhi}) - ((hfsq - (s * (hfsq + R) + e * _F({llo}))) - f)
    y = y if x < _F(math.inf) else x + x         # log(inf) = inf, NaN passes
    y = _F(-math.inf) if x == _F(0.0) else y
    return _F(math.nan) if x < _F(0.0) else y
'''


def _typed_horner(coefficients, var: str) -> str:
    out = f"_F({coefficients[-1]!r})"
    for c in reversed(coefficients[:-1]):
        out = f"_F({c!r}) + {var} * ({out})"
    return out


def exp_log_source(dtype: str) -> str:
    """The ``@njit`` helpers ``_vexp`` and ``_vlog`` for a kernel of ``dtype`` (every constant typed
    ``_F``, the kernel dtype, so float32 stays float32), after :data:`BITS_SOURCE`."""
    if dtype not in _LAYOUT:
        raise ValueError(f"vectorisable exp/log exist for float32 and float64, not {dtype!r}")
    c = _LAYOUT[dtype]
    return BITS_SOURCE + _EXP_LOG_TEMPLATE.format(
        dtype=dtype, lo=repr(c["lo"]), hi=repr(c["hi"]), ehi=repr(c["exp_ln2"][0]), elo=repr(c["exp_ln2"][1]),
        exp_poly=_typed_horner([1.0 / factorial(n) for n in range(c["exp_degree"] + 1)], "r"),
        tiny=repr(_TINY[dtype]), scale=repr(float(2 ** c["sub_scale"])), shift=repr(float(c["sub_scale"])),
        log_poly=_typed_horner([2.0 / (2 * n + 1) for n in range(1, c["log_terms"] + 1)], "z"),
        lhi=repr(c["log_ln2"][0]), llo=repr(c["log_ln2"][1]))


def vector_sources(used, dtype: str) -> str:
    """The helper sources a kernel needs: ``used`` holds what its printer wrote (``"tanh"``,
    ``"exp"``, ``"log"``)."""
    out = VTANH_SOURCE if "tanh" in used else ""
    if {"exp", "log"} & set(used):
        out += exp_log_source(dtype)
    return out
