"""The Jinja environment the code generators render with, and what a rendering returns.

The templates decide the code's shape, SymPy's printers the expressions; nothing builds code by
string concatenation. :mod:`npdegen.codegen.step_render` renders a lowered step IR with a target's
templates (``templates/step_<backend>/``) through :func:`environment`; :class:`Rendered` holds the
files and their content key (the cache's identity of the code); :func:`templates_digest` hashes a
template folder into that key.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

__all__ = ["BOUNDARIES", "DTYPES", "Rendered", "template_dir", "environment", "templates_digest"]

BOUNDARIES = ("periodic", "dirichlet", "neumann")
DTYPES = ("float32", "float64")


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
def environment() -> jinja2.Environment:
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
def templates_digest(folder: str) -> str:
    h = hashlib.sha256()
    for path in sorted((template_dir() / folder).rglob("*")):
        if path.is_file():
            h.update(path.relative_to(template_dir()).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()
