"""TOML spec files: a layer and its compile options, parsed without evaluating anything.

Format (all expression strings go through :func:`npdegen.spec.parse.parse_expression`)::

    [layer]
    name = "adr"                            # identifier, used for file names
    field = "z"                             # the field's name
    coordinate = "q"                        # the coordinate's name (N-D: coordinates = ["x", "y"])
    transform = "z + R*z - U*z_q + D*z_qq"  # z_q = dz/dq, z_qq = d²z/dq², or diff(z, q, k); z_xy mixed
    activation = "tanh"                     # a built-in name, or an expression in x: "x/(1 + abs(x))"
    bias = "heterogeneous"                  # optional: homogeneous | heterogeneous | time-dependent
    accuracy = 2                            # optional, default 2 (at most MAX_ACCURACY = 16)
    offsets = [-1, 0, 1]                    # optional explicit stencil (at most 17 distinct integers)

    [layer.params]                          # every parameter symbol and its family
    U = "heterogeneous"
    D = "heterogeneous"
    R = "heterogeneous"

    [compile]                               # optional: options of NeuralPDE.compile / generate
    boundary = "periodic"
    dtype = "float32"

A conservation law (``npdegen.conservation_law``) replaces ``transform`` by its flux::

    [layer]
    kind = "conservation_law"               # default "neural_pde"
    name = "burgers_flux"
    flux = "c*z**2/2"                       # g(z); or a list, one per coordinate
    diffusion = "nu"                        # optional, default 0
    numerical_flux = "godunov"              # godunov | engquist_osher | rusanov | central
    positive = ["c"]                        # parameters known positive (makes c*z**2/2 provably convex)

Files are read bounded: at most ``MAX_FILE_BYTES`` (64 KB) are accepted, and never more than one
byte beyond that is read (``/dev/zero`` or a pipe fails at once). ``accuracy`` and ``offsets`` are
bounded before anything is derived, so a small file cannot ask for a huge stencil.
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

_LAYER_KEYS = {"name", "field", "coordinate", "coordinates", "transform", "activation", "params", "bias", "accuracy",
               "offsets", "kind"}
_FLUX_KEYS = {"kind", "name", "field", "coordinate", "coordinates", "flux", "diffusion", "numerical_flux", "positive",
              "activation", "params", "bias"}
KINDS = ("neural_pde", "conservation_law")
_COMPILE_KEYS = {"n", "spacing", "layers", "omega", "alpha", "boundary", "dtype", "backend", "train_omega"}
MAX_FILE_BYTES = 64 * 1024
#: Largest finite-difference accuracy in a spec file (central stencils of up to 17 points).
MAX_ACCURACY = 16
MAX_OFFSETS = 17
MAX_OFFSET = 64


class SpecFile(dict):
    """``{"kind": "neural_pde" | "conservation_law", "layer": kwargs for the layer's class,
    "compile": options}``, validated for shape."""


def _require(table: dict, key: str, kind, where: str):
    if key not in table:
        raise ValueError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _check_stencil(layer: dict, where: str):
    """Bound ``accuracy`` and ``offsets`` (their meaning is checked by ``NeuralPDE``)."""
    accuracy = layer.get("accuracy", 2)
    if not isinstance(accuracy, int) or isinstance(accuracy, bool) or not 1 <= accuracy <= MAX_ACCURACY:
        raise ValueError(f"{where}: 'accuracy' must be an integer from 1 to {MAX_ACCURACY}, got {accuracy!r}")
    offsets = layer.get("offsets")
    if offsets is None:
        return
    if not isinstance(offsets, list) or not all(isinstance(j, int) and not isinstance(j, bool) for j in offsets):
        raise ValueError(f"{where}: 'offsets' must be a list of integers, got {offsets!r}")
    if not 1 <= len(offsets) <= MAX_OFFSETS or any(abs(j) > MAX_OFFSET for j in offsets):
        raise ValueError(f"{where}: 'offsets' must hold 1 to {MAX_OFFSETS} integers of magnitude at most "
                         f"{MAX_OFFSET}, got {len(offsets)} offsets reaching {max(map(abs, offsets), default=0)}")


def read_spec_file(path) -> SpecFile:
    """Read a TOML spec into keyword arguments for ``NeuralPDE`` and its compile options."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a spec file")
    with path.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
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
    kind = layer.get("kind", "neural_pde")
    if kind not in KINDS:
        raise ValueError(f"{path} [layer]: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    extra = set(layer) - (_LAYER_KEYS if kind == "neural_pde" else _FLUX_KEYS)
    if extra:
        raise ValueError(f"{path}: unknown key(s) in [layer] of kind {kind}: {sorted(extra)}")
    where = f"{path} [layer]"
    if kind == "neural_pde":
        _check_stencil(layer, where)
    field_name = validate_identifier(layer.get("field", "z"), "field name")
    if "coordinate" in layer and "coordinates" in layer:
        raise ValueError(f"{where}: give 'coordinate' (1-D) or 'coordinates' (a list, 1-3 names), not both")
    names = layer.get("coordinates", [layer.get("coordinate", "q")])
    if not isinstance(names, list) or not 1 <= len(names) <= 3 or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{where}: 'coordinates' must be a list of 1 to 3 names, got {names!r}")
    field = sp.Function(field_name)(*(sp.Symbol(validate_identifier(c, "coordinate name")) for c in names))
    kwargs = {"field": field, "name": validate_identifier(layer.get("name", kind), "layer name")}
    positive = {}
    if kind == "neural_pde":
        kwargs["transform"] = parse_expression(_require(layer, "transform", str, where), fields={field_name: field})
    else:
        names = layer.get("positive", [])
        if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
            raise ValueError(f"{where}: 'positive' must be a list of parameter names")
        positive = {sp.Symbol(validate_identifier(v, "parameter name")): sp.Symbol(v, positive=True) for v in names}
        flux = layer.get("flux")
        fluxes = flux if isinstance(flux, list) else [flux]
        if not fluxes or not all(isinstance(g, str) for g in fluxes):
            raise ValueError(f"{where}: 'flux' must be an expression string or a list of them (one per coordinate)")
        parsed = [parse_expression(g, fields={field_name: field}).xreplace(positive) for g in fluxes]
        kwargs["flux"] = parsed if isinstance(flux, list) else parsed[0]
        diffusion = layer.get("diffusion", "0")
        if not isinstance(diffusion, str):
            raise ValueError(f"{where}: 'diffusion' must be an expression string")
        kwargs["diffusion"] = parse_expression(diffusion).xreplace(positive)
        method = layer.get("numerical_flux", "godunov")
        if not isinstance(method, str):
            raise ValueError(f"{where}: 'numerical_flux' must be a string")
        kwargs["numerical_flux"] = method
    activation = layer.get("activation", "identity")
    if not isinstance(activation, str):
        raise ValueError(f"{where}: 'activation' must be a string")
    kwargs["activation"] = activation if activation in BUILTIN_ACTIVATIONS else parse_expression(activation)
    params = layer.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise ValueError(f"{where}: [layer.params] must map names to family strings")
    kwargs["params"] = {positive.get(s, s): v for s, v in
                        ((sp.Symbol(validate_identifier(k, "parameter name")), v) for k, v in params.items())}
    for key in ("bias", "accuracy", "offsets") if kind == "neural_pde" else ("bias",):
        if key in layer:
            kwargs[key] = layer[key]
    options = doc.get("compile", {})
    if not isinstance(options, dict):
        raise ValueError(f"{path}: [compile] must be a table")
    extra = set(options) - _COMPILE_KEYS
    if extra:
        raise ValueError(f"{path}: unknown key(s) in [compile]: {sorted(extra)}")
    return SpecFile(kind=kind, layer=kwargs, compile=dict(options))
