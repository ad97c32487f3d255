"""``load_spec``: a TOML spec file to the layer it describes (a facade over the layer classes)."""
from __future__ import annotations

from .conservation import ConservationLaw
from .layer import NeuralPDE
from .spec.specfile import read_spec_file

__all__ = ["load_spec"]

_KINDS = {"neural_pde": NeuralPDE, "conservation_law": ConservationLaw}


def load_spec(path) -> tuple[NeuralPDE, dict]:
    """Read a TOML spec file (format: :mod:`npdegen.spec.specfile`); returns ``(layer, compile_options)``
    (a :class:`~npdegen.NeuralPDE`, or a :class:`~npdegen.ConservationLaw` for ``kind = "conservation_law"``).

    Expression strings are parsed by a whitelist parser: nothing in the file is evaluated.
    """
    spec = read_spec_file(path)
    return _KINDS[spec["kind"]](**spec["layer"]), spec["compile"]
