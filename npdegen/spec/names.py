"""Identifier rules for every user-chosen name (fields, parameters, symbols).

A user name ends up verbatim in generated Python, NumPy, CuPy and CUDA C
source, so it must be a plain ASCII identifier that cannot collide with a
keyword of any of those languages, with a Python builtin, with a local
variable of the generated modules, or with a name of the expression
language itself (``exp``, ``pi``, ``diff``, ...).

All reserved names live in :data:`RESERVED`; :func:`validate_identifier` is
the single gate every user name goes through.
"""

from __future__ import annotations

import builtins
import keyword
import re

__all__ = ["RESERVED", "MAX_IDENTIFIER_LENGTH", "validate_identifier"]

#: Longest identifier accepted, in characters.
MAX_IDENTIFIER_LENGTH = 32

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# Python: hard keywords, soft keywords and every builtin name (``print``,
# ``open``, ``eval``, ``abs``, ``max``, ...).  ``type`` is a soft keyword from
# Python 3.12 on and is listed for older interpreters too.
_PYTHON = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins)) | {"type"}

# C, C++ and CUDA keywords, CUDA built-in variables and common C types or
# macros that a generated kernel may spell out.
_C_FAMILY = frozenset(
    """
    auto break case char const continue default do double else enum extern
    float for goto if inline int long register restrict return short signed
    sizeof static struct switch typedef union unsigned void volatile while
    bool true false class namespace template this new delete
    alignas alignof and and_eq asm bitand bitor catch char8_t char16_t
    char32_t compl concept const_cast consteval constexpr constinit co_await
    co_return co_yield decltype dynamic_cast explicit export friend mutable
    noexcept not not_eq nullptr operator or or_eq private protected public
    reinterpret_cast requires static_assert static_cast thread_local throw
    try typeid typename using virtual wchar_t xor xor_eq
    __global__ __device__ __host__ __shared__ __constant__ __managed__
    __restrict__ __syncthreads __forceinline__ __noinline__
    threadIdx blockIdx blockDim gridDim warpSize dim3
    half half2 float2 float3 float4 double2 double3 double4 int2 int3 int4
    size_t ptrdiff_t int8_t int16_t int32_t int64_t uint8_t uint16_t
    uint32_t uint64_t NULL INFINITY NAN HUGE_VAL M_PI M_E
    """.split()
)

# C math library functions that a generated C/CUDA kernel calls by name.
_C_MATH = frozenset(
    """
    acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh erf
    erfc exp exp2 expm1 fabs floor fma fmax fmin fmod frexp hypot ldexp
    lgamma log log10 log1p log2 modf pow round rsqrt sin sincos sinh sqrt tan
    tanh tgamma trunc expf logf sqrtf powf fabsf fmaxf fminf tanhf
    """.split()
)

# Names of the expression language (npdegen.spec.parse): functions, the
# constants ``pi`` and ``E``, and ``diff``.  A parameter with one of these
# names could never be referred to in an expression.
_EXPRESSION_LANGUAGE = frozenset(
    """
    exp log sqrt sin cos tan sinh cosh tanh atan asinh abs Abs max min Max
    Min Heaviside sign log1p pi E diff
    """.split()
)

# Generated code never defines a user's name: every parameter is printed with a prefix of its own
# (``p_<name>``, ``_p_<name>``, ``theta_<name>``, …; tests/test_name_namespace.py proves that no
# template identifier can match one), so collisions are impossible by construction. These names
# stay reserved as defence in depth and because some are ambiguous in the user's own expressions
# (``Delta`` is the spacing symbol). ``z``, ``q`` and ``x`` are deliberately NOT reserved: users
# name their field, coordinate and activation variable that way.
_GENERATED_LOCALS = frozenset(
    """
    numpy np math cupy cp sympy sp scipy numba theta grads spacing Delta omega
    alpha layer layers batch n zp Z lam work out tmp s self cls
    """.split()
)

#: Every name a user may not choose (case-sensitive).
RESERVED: frozenset[str] = _PYTHON | _C_FAMILY | _C_MATH | _EXPRESSION_LANGUAGE | _GENERATED_LOCALS


def _show(name: str) -> str:
    """``repr`` of *name*, shortened so that error messages stay readable."""
    text = repr(name)
    return text if len(text) <= 48 else text[:40] + "...'"


def validate_identifier(name: str, what: str = "name") -> str:
    """Return *name* unchanged if it is an acceptable user identifier.

    Rules: ASCII letter first, then ASCII letters, digits or underscores;
    at most :data:`MAX_IDENTIFIER_LENGTH` characters; no double underscore;
    no trailing underscore; not in :data:`RESERVED`.

    Raises ``TypeError`` if *name* is not a ``str`` and ``ValueError`` (whose
    message names *what*, the offending name and the rule broken) otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    shown = _show(name)
    if len(name) > MAX_IDENTIFIER_LENGTH:
        reason = f"is longer than {MAX_IDENTIFIER_LENGTH} characters"
    elif not name:
        reason = "is empty"
    elif _IDENTIFIER.fullmatch(name) is None:
        reason = "must start with an ASCII letter and contain only ASCII letters, digits and underscores"
    elif "__" in name:
        reason = "must not contain a double underscore"
    elif name.endswith("_"):
        reason = "must not end with an underscore"
    elif name.startswith("Delta_"):
        reason = "must not start with Delta_ (the grid spacing symbols Delta_<coordinate>)"
    elif name in RESERVED:
        reason = ("is reserved (a keyword, builtin, C/CUDA name, expression-language name or local of "
                  "the generated code)")
    else:
        return name
    raise ValueError(f"invalid {what} {shown}: {reason}")
