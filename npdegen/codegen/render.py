"""Render a :class:`~npdegen.derive.kernel.KernelIR` into source code with Jinja templates.

The template decides the code's shape, SymPy's printers the expressions; nothing here builds
code by string concatenation. :func:`render` returns the source and its content key, a hash of
everything that changes the code (kernel description, npdegen version, template files, backend,
options), which the cache uses as the file's identity.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import sympy as sp

from .._version import __version__
from ..derive.kernel import KernelIR
from ..spec.activations import ACTIVATION_SYMBOL
from .printing import NumpyKernelPrinter, assignments
from .ufuncs import UfuncCall, UfuncProgram, ufunc_program

__all__ = ["BOUNDARIES", "DTYPES", "KernelOptions", "Rendered", "render", "template_dir"]

BOUNDARIES = ("periodic", "dirichlet", "neumann")
DTYPES = ("float32", "float64")
BACKENDS = {"numpy": ("numpy", "module.py.j2", ".py")}
#: The generated code applies the activation to the array named ``Z``.
_Z = sp.Symbol("Z", real=True)


@dataclass(frozen=True)
class KernelOptions:
    """Options that change generated code (and so the cache key)."""
    backend: str = "numpy"
    boundary: str = "periodic"
    dtype: str = "float64"
    normalise: bool = False      # soft normalisation term -alpha (|z| - 1) z
    train_omega: bool = False    # gradient with respect to omega

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"unknown boundary {self.boundary!r}; choose one of {', '.join(BOUNDARIES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for flag in ("normalise", "train_omega"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False")


@dataclass(frozen=True)
class Rendered:
    source: str
    key: str          # content hash (hex)
    suffix: str       # file suffix, e.g. ".py"


def template_dir() -> Path:
    """Templates ship inside the wheel as ``npdegen/templates``; a source checkout has them at the top."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("npdegen templates not found (broken installation?)")


@lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,            # Python/C source, not HTML: identifiers are validated upstream
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = repr   # Python literal of a str/int/tuple/dict/None
    return env


def _templates_digest(folder: str) -> str:
    h = hashlib.sha256()
    for path in sorted((template_dir() / folder).rglob("*")):
        if path.is_file():
            h.update(path.relative_to(template_dir()).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def content_key(ir: KernelIR, options: KernelOptions) -> str:
    folder = BACKENDS[options.backend][0]
    blob = json.dumps({"kernel": ir.fingerprint(), "version": __version__,
                       "templates": _templates_digest(folder), "options": vars(options)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _context(ir: KernelIR, options: KernelOptions) -> dict:
    printer = NumpyKernelPrinter()
    x = ACTIVATION_SYMBOL
    z_expr = lambda e: e.subs(x, _Z)
    weights = assignments(ir.weights, printer, prefix="c")
    jac_exprs = [d for _, ds in ir.dweights for d in ds]
    both = assignments([*ir.weights, *jac_exprs], printer, prefix="c")
    nw = len(ir.weights)
    jac_results = both.results[nw:]
    jacobians = []
    for p, (name, ds) in enumerate(ir.dweights):
        terms = [(j, jac_results[p * nw + i]) for i, (j, d) in enumerate(zip(ir.offsets, ds)) if d != 0]
        jacobians.append((name, terms))
    needed = sorted({j for _, terms in jacobians for j, _ in terms})
    f, fprime = (_template_program(ufunc_program(z_expr(e), _Z)) for e in (ir.f, ir.fprime))
    return dict(
        ir=ir, opt=options, version=__version__,
        families=dict(ir.params),
        slot={j: i for i, j in enumerate(ir.offsets)},
        weights=weights,
        weights_and_jacobians=both, jacobians=jacobians, gradient_offsets=needed,
        f=f, fprime=fprime, temporaries=max(f.buffers, fprime.buffers),
    )


def _template_program(program: UfuncProgram) -> UfuncProgram:
    """Temporaries t0, t1, … live in the list ``t`` of the generated functions."""
    rename = {f"t{i}": f"t[{i}]" for i in range(program.buffers)}
    calls = tuple(UfuncCall(c.func, tuple(rename.get(a, a) for a in c.args), rename.get(c.out, c.out))
                  for c in program.calls)
    return UfuncProgram(calls, rename.get(program.result, program.result), program.buffers)




def render(ir: KernelIR, options: KernelOptions) -> Rendered:
    """Render the kernel module of ``ir`` for ``options``."""
    folder, name, suffix = BACKENDS[options.backend]
    key = content_key(ir, options)
    template = _environment().get_template(f"{folder}/{name}")
    source = template.render(key=key, **_context(ir, options))
    return Rendered(source=source, key=key, suffix=suffix)
