"""TOML spec files: a layer and its compile options, parsed without evaluating anything.

Format (all expression strings go through :func:`npdegen.spec.parse.parse_expression`)::

    [layer]
    name = "adr"                            # identifier, used for file names
    field = "z"                             # the field's name
    coordinate = "q"                        # the coordinate's name
    transform = "z + R*z - U*z_q + D*z_qq"  # z_q = dz/dq, z_qq = d²z/dq², or diff(z, q, k)
    activation = "tanh"                     # a built-in name, or an expression in x: "x/(1 + abs(x))"
    bias = "heterogeneous"                  # optional: homogeneous | heterogeneous | time-dependent
    accuracy = 2                            # optional, default 2
    offsets = [-1, 0, 1]                    # optional explicit stencil

    [layer.params]                          # every parameter symbol and its family
    U = "heterogeneous"
    D = "heterogeneous"
    R = "heterogeneous"

    [compile]                               # optional: options of NeuralPDE.compile / generate
    boundary = "periodic"
    dtype = "float32"
"""
from __future__ import annotations

import sys
from pathlib import Path

import sympy as sp

from .activations import BUILTIN_ACTIVATIONS
from .names import validate_identifier
from .parse import parse_expression

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_spec_file", "SpecFile"]

_LAYER_KEYS = {"name", "field", "coordinate", "transform", "activation", "params", "bias", "accuracy", "offsets"}
_COMPILE_KEYS = {"n", "spacing", "layers", "omega", "alpha", "boundary", "dtype", "backend", "train_omega"}
MAX_FILE_BYTES = 64 * 1024


class SpecFile(dict):
    """``{"layer": kwargs for NeuralPDE, "compile": options}``, both validated for shape."""


def _require(table: dict, key: str, kind, where: str):
    if key not in table:
        raise ValueError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def read_spec_file(path) -> SpecFile:
    """Read a TOML spec into keyword arguments for ``NeuralPDE`` and its compile options."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: spec file larger than {MAX_FILE_BYTES} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a valid TOML file: {exc}") from None
    unknown = set(doc) - {"layer", "compile"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)}; expected [layer] and [compile]")
    layer = _require(doc, "layer", dict, str(path))
    extra = set(layer) - _LAYER_KEYS
    if extra:
        raise ValueError(f"{path}: unknown key(s) in [layer]: {sorted(extra)}")
    where = f"{path} [layer]"
    field_name = validate_identifier(layer.get("field", "z"), "field name")
    coord_name = validate_identifier(layer.get("coordinate", "q"), "coordinate name")
    q = sp.Symbol(coord_name)
    field = sp.Function(field_name)(q)
    transform = parse_expression(_require(layer, "transform", str, where), fields={field_name: field})
    kwargs = {"transform": transform, "field": field,
              "name": validate_identifier(layer.get("name", "neural_pde"), "layer name")}
    activation = layer.get("activation", "identity")
    if not isinstance(activation, str):
        raise ValueError(f"{where}: 'activation' must be a string")
    kwargs["activation"] = activation if activation in BUILTIN_ACTIVATIONS else parse_expression(activation)
    params = layer.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise ValueError(f"{where}: [layer.params] must map names to family strings")
    kwargs["params"] = {sp.Symbol(validate_identifier(k, "parameter name")): v for k, v in params.items()}
    for key in ("bias", "accuracy", "offsets"):
        if key in layer:
            kwargs[key] = layer[key]
    options = doc.get("compile", {})
    if not isinstance(options, dict):
        raise ValueError(f"{path}: [compile] must be a table")
    extra = set(options) - _COMPILE_KEYS
    if extra:
        raise ValueError(f"{path}: unknown key(s) in [compile]: {sorted(extra)}")
    return SpecFile(layer=kwargs, compile=dict(options))
