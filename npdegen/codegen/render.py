"""Render a :class:`~npdegen.derive.kernel.KernelIR` into source files with Jinja templates.

The templates decide the code's shape, SymPy's printers the expressions; nothing here builds
code by string concatenation. Each backend is a :class:`Target` (its template folder, the files
it renders, and the function that prints the expressions for its templates), registered in
:data:`TARGETS`. :func:`render` returns the files and their content key, a hash of everything
that changes the code (kernel description, npdegen version, template files, backend, options),
which the cache uses as their identity.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from .._version import __version__
from ..derive.kernel import KernelIR

__all__ = ["BOUNDARIES", "DTYPES", "KernelOptions", "Rendered", "Target", "TARGETS", "get_target", "render",
           "template_dir", "content_key"]

BOUNDARIES = ("periodic", "dirichlet", "neumann")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Target:
    """A code-generation backend: ``files`` maps a file suffix (``".py"`` first: the module the
    runtime imports) to a template inside ``templates/<folder>/``; ``context(ir, options)``
    returns the printed expressions the templates need."""
    folder: str
    files: tuple                  # ((suffix, template name), ...)
    context: Callable


#: Code generators by backend name: the module that defines its ``TARGET`` (imported on first use,
#: so that this module imports no target and no target imports cycle back).
_TARGET_MODULES = {"numpy": "npdegen.codegen.numpy_target", "numba": "npdegen.codegen.numba_target",
                   "cupy": "npdegen.codegen.cuda_target"}
#: The targets loaded so far, by backend name.
TARGETS: dict[str, Target] = {}


def get_target(backend: str) -> Target:
    """The code generator of ``backend`` (imported on first use)."""
    if backend not in TARGETS:
        if backend not in _TARGET_MODULES:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(_TARGET_MODULES)}")
        TARGETS[backend] = importlib.import_module(_TARGET_MODULES[backend]).TARGET
    return TARGETS[backend]


@dataclass(frozen=True)
class KernelOptions:
    """Options that change generated code (and so the cache key)."""
    backend: str = "numpy"
    boundary: str = "periodic"
    dtype: str = "float64"
    normalise: bool = False      # soft normalisation term -alpha (|z| - 1) z
    train_omega: bool = False    # gradient with respect to omega

    def __post_init__(self):
        if self.backend not in _TARGET_MODULES:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(_TARGET_MODULES)}")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"unknown boundary {self.boundary!r}; choose one of {', '.join(BOUNDARIES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for flag in ("normalise", "train_omega"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False")


@dataclass(frozen=True)
class Rendered:
    files: dict       # suffix -> source text; ".py" is the module to import
    key: str          # content hash (hex)

    @property
    def source(self) -> str:
        return self.files[".py"]


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


@lru_cache(maxsize=None)
def _templates_digest(folder: str) -> str:
    h = hashlib.sha256()
    for path in sorted((template_dir() / folder).rglob("*")):
        if path.is_file():
            h.update(path.relative_to(template_dir()).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def content_key(ir: KernelIR, options: KernelOptions) -> str:
    """Hash of everything that changes the generated files."""
    blob = json.dumps({"kernel": ir.fingerprint(), "version": __version__,
                       "templates": _templates_digest(get_target(options.backend).folder),
                       "options": vars(options)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def render(ir: KernelIR, options: KernelOptions) -> Rendered:
    """Render every file of the kernel of ``ir`` for ``options``."""
    target = get_target(options.backend)
    key = content_key(ir, options)
    try:
        context = target.context(ir, options)
    except NotImplementedError as exc:   # a SymPy printer without a method for some function
        raise ValueError(f"cannot generate {options.backend} code for layer {ir.name!r}: {exc}") from None
    env = _environment()
    files = {suffix: env.get_template(f"{target.folder}/{name}").render(key=key, ir=ir, opt=options,
                                                                         version=__version__, **context)
             for suffix, name in target.files}
    return Rendered(files=files, key=key)
