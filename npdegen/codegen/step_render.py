"""Render a lowered step IR (:mod:`npdegen.ir`) with a target's Jinja templates.

Every target of the step IR is a :class:`StepTarget` in :data:`STEP_TARGETS` (registered lazily by
module path, so this module imports no target): its template folder, its files, and the function
that prints the IR's expressions for its templates. Templates hold loop shapes over accesses and
reductions only; no template knows what a particular layer computes.

Every layer's kernels come from here (1-D and N-D, linear or not).
"""
from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .._version import __version__
from ..grid import normalise_boundaries
from ..ir.lower import LoweredStep
from .render import DTYPES, Rendered, environment, templates_digest

__all__ = ["StepOptions", "StepTarget", "STEP_TARGETS", "step_target", "render_step", "step_content_key"]


@dataclass(frozen=True)
class StepTarget:
    folder: str
    files: tuple                  # ((suffix, template name), ...); ".py" first
    context: Callable             # (lowered, options) -> dict of printed expressions


#: Target modules by backend name; each module defines ``TARGET`` (imported on first use).
_TARGET_MODULES = {"numpy": "npdegen.codegen.step_numpy", "numba": "npdegen.codegen.step_numba",
                   "cupy": "npdegen.codegen.step_cuda"}
STEP_TARGETS: dict[str, StepTarget] = {}


def step_target(backend: str) -> StepTarget:
    if backend not in STEP_TARGETS:
        if backend not in _TARGET_MODULES:
            raise ValueError(f"no step-IR code generator for backend {backend!r}; available: "
                             f"{', '.join(_TARGET_MODULES)}")
        STEP_TARGETS[backend] = importlib.import_module(_TARGET_MODULES[backend]).TARGET
    return STEP_TARGETS[backend]


@dataclass(frozen=True)
class StepOptions:
    """Options that change generated step kernels (and so the cache key)."""
    backend: str = "numpy"
    boundary: tuple = ("periodic",)
    dtype: str = "float64"
    normalise: bool = False
    train_omega: bool = False
    #: numba: ``"auto"`` (vectorisable forms of f in float32, a vectorisable tanh in float64),
    #: ``"fast"`` or ``"exact"`` (libm); the other backends compute the exact forms.
    activations: str = "auto"

    def __post_init__(self):
        if self.activations not in ("auto", "fast", "exact"):
            raise ValueError(f"activations must be one of auto, fast, exact, got {self.activations!r}")
        if self.backend not in _TARGET_MODULES:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(_TARGET_MODULES)}")
        object.__setattr__(self, "boundary", normalise_boundaries(self.boundary, len(self.boundary)
                                                                  if not isinstance(self.boundary, str) else 1))
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for flag in ("normalise", "train_omega"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False")


@lru_cache(maxsize=None)
def _generator_digest() -> str:
    """Hash of the code that turns a step IR into source: the IR, its lowering, the printers and
    targets (``npdegen/ir``, ``npdegen/codegen``): editing any of them must not reuse old kernels."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted([*(root / "ir").glob("*.py"), *(root / "codegen").glob("*.py")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def step_content_key(lowered: LoweredStep, options: StepOptions) -> str:
    """Hash of everything that changes a generated step kernel: the IR, npdegen's version, the
    target's templates, the generator's own code and the options."""
    target = step_target(options.backend)
    blob = json.dumps({"step": lowered.ir.fingerprint(), "version": __version__,
                       "templates": templates_digest(target.folder), "generator": _generator_digest(),
                       "options": repr(options)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def render_step(lowered: LoweredStep, options: StepOptions) -> Rendered:
    target = step_target(options.backend)
    key = step_content_key(lowered, options)
    try:
        context = target.context(lowered, options)
    except NotImplementedError as exc:
        raise ValueError(f"cannot generate {options.backend} code for layer {lowered.ir.name!r}: {exc}") from None
    env = environment()
    files = {suffix: env.get_template(f"{target.folder}/{name}").render(
        key=key, ir=lowered.ir, low=lowered, opt=options, version=__version__, **context)
        for suffix, name in target.files}
    return Rendered(files=files, key=key)
