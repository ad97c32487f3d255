"""``npdegen inspect SPEC|weights.npy``: the physics report and stability certificate as a table
(``--json`` for machine-readable output) and the plots (``--out DIR``).

A TOML spec is reported symbolically; give every parameter with ``--param NAME=VALUE`` (and
``b=VALUE`` for a bias) to get numbers, the stability certificate and the plots. A ``.npy`` file
holds a square weight matrix: its moments, explained fraction, nearest stencils and locality.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sympy as sp

__all__ = ["add_parser", "run"]


def add_parser(subparsers, parents=()):
    """Add the ``inspect`` command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("inspect", help="physics report, stability and plots of a TOML spec or a .npy matrix",
                              description=__doc__, parents=list(parents))
    p.add_argument("source", help="a TOML layer spec, or a .npy file with a square weight matrix")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a (homogeneous) parameter value; repeat for each parameter")
    p.add_argument("--omega", type=float, help="relaxation omega (default: the spec's [compile], else 1)")
    p.add_argument("--spacing", type=float, help="grid spacing Delta (default: the spec's, else 1)")
    p.add_argument("--slope", type=float, help="activation slope f' (default: f'(0) of the activation)")
    p.add_argument("--layers", type=int, help="number of layers L (default: the spec's, else 16)")
    p.add_argument("--n", type=int, help="sites for the matrix, conservation and trajectory (default 64)")
    p.add_argument("--max-order", type=int, default=4, help="highest moment order (default 4)")
    p.add_argument("--period", type=float, help=".npy: length of a periodic domain (offsets wrap)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--out", help="folder for the plots (a spec needs every --param)")
    p.add_argument("--format", choices=("png", "svg"), default="png", help="plot format (default png)")
    p.set_defaults(func=run)
    return p


def _params(pairs) -> dict:
    out = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param {name.strip()}: {value!r} is not a number") from None
    return out


def _inspect_matrix(args) -> tuple[dict, str, dict]:
    from .moments import kernel_moments
    W = np.load(args.source, allow_pickle=False)
    km = kernel_moments(W, max_order=args.max_order, period=args.period)
    fits = {w: km.nearest_stencil(w) for w in (3, 5) if w < W.shape[0]}
    text = [str(km), f"locality: 99% of sum|W| within {km.locality_radius()} sites"]
    text += [f"nearest {w}-point stencil: {', '.join(f'{j:+d}: {v:.5g}' for j, v in f.stencil.items())}"
             f"  (relative residual {f.residual:.3g})" for w, f in fits.items()]
    data = {"kind": "matrix", **km.to_dict(),
            "nearest_stencils": {str(w): {"stencil": {str(j): v for j, v in f.stencil.items()},
                                          "residual": f.residual} for w, f in fits.items()}}
    figures = {}
    if args.out:
        from . import plots
        figures = {"moments": plots.plot_moments(km), "locality": plots.plot_locality(km)}
        if fits:
            figures["stencil"] = plots.plot_stencil(fits[max(fits)], title="nearest banded stencil")
    return data, "\n".join(text), figures


def _trajectory(ir, params, W, b, omega, layers):
    from .attractor import _activation
    f, _ = _activation(ir)
    n = W.shape[0]
    q = np.arange(n)
    z = np.exp(-0.5 * ((q - n / 2) / (n / 16)) ** 2)
    out = [z]
    for _ in range(layers):
        z = (1 - omega) * z + omega * f(W @ z - b)
        out.append(z)
    return np.array(out)


def _inspect_spec(args) -> tuple[dict, str, dict]:
    from ..load import load_spec
    from .matrix import layer_bias, layer_matrix, layer_weights
    from .report import physics_report
    from .stability import stability
    layer, options = load_spec(args.source)
    if not layer._linear_1d:
        return _inspect_step(args, layer, options)
    ir = layer.kernel_ir
    spacing = args.spacing if args.spacing is not None else float(options.get("spacing", 1.0))
    omega = args.omega if args.omega is not None else float(options.get("omega", 1.0))
    layers = args.layers if args.layers is not None else int(options.get("layers", 16))
    n = args.n if args.n is not None else int(options.get("n", 64))
    boundary = options.get("boundary", "periodic")
    params = _params(args.param)
    names = [name for name, _ in ir.params]
    numeric = all(k in params for k in names)
    report = physics_report(layer, params if numeric else None, spacing=spacing, omega=omega, slope=args.slope,
                            layers=layers, max_order=args.max_order)
    shown = sp.nsimplify(spacing) if float(spacing).is_integer() else spacing
    text = [repr(layer), "stencil:"] + [f"  w[{j:+d}] = {w}" for j, w in layer.stencil(shown).items()]
    text.append(str(report))
    data = {"kind": "spec", "layer": repr(layer), "report": report.to_dict()}
    figures = {}
    missing = [k for k in names if k not in params]
    if missing and args.out:
        raise ValueError(f"--out: the plots need a value for every parameter; give --param NAME=VALUE for "
                         f"{', '.join(missing)}")
    if not numeric:
        text.append(f"stability: give --param NAME=VALUE for {', '.join(missing)} to certify it and to plot")
        return data, "\n".join(text), figures
    cert = stability(layer, params, spacing=spacing, omega=omega, slope=float(report.slope), n=n,
                     boundary=boundary)
    text.append("stability: " + str(cert))
    data["stability"] = cert.to_dict()
    if args.out:
        from . import plots
        offsets, w = layer_weights(layer, params, spacing)
        W = layer_matrix(layer, params, n, spacing, boundary)
        traj = _trajectory(ir, params, W, layer_bias(layer, params, n), omega, layers)
        figures = {"stencil": plots.plot_stencil((offsets, w)), "amplification": plots.plot_amplification(cert),
                   "trajectory": plots.plot_trajectory(traj)}
    return data, "\n".join(text), figures


def _inspect_step(args, layer, options) -> tuple[dict, str, dict]:
    """N-D and nonlinear layers: their moments (or site expression), and the step-IR certificate
    (von Neumann / Lax-Richtmyer; a nonlinear layer linearised at the zero state)."""
    from .stability_nd import step_stability
    ir = layer.step_ir
    dim = ir.dim
    spacing = args.spacing if args.spacing is not None else options.get("spacing", 1.0)
    omega = args.omega if args.omega is not None else float(options.get("omega", 1.0))
    params = _params(args.param)
    names = [p.name for p in ir.params if p.role == "transform"]
    text = [repr(layer)]
    data = {"kind": "spec", "layer": repr(layer), "dim": dim, "linear": ir.linear}
    if ir.linear:
        table = layer.explain()
        text.append(str(table))
        data["moments"] = {str(r.order): str(r.moment) for r in table}
    else:
        text.append(f"G = {ir.site}   (z_<offset> = z[i + offset], p_<name> = parameter)")
        text += [f"  dG/d{a} = {d}" for a, d in zip(ir.access_symbols, ir.d_access)]
    missing = [k for k in names if k not in params]
    if missing:
        if args.out:
            raise ValueError(f"--out: give --param NAME=VALUE for {', '.join(missing)}")
        text.append(f"stability: give --param NAME=VALUE for {', '.join(missing)} to certify it")
        return data, "\n".join(text), {}
    if args.out:
        raise ValueError("--out: plots of N-D and nonlinear layers are not available yet; drop --out")
    slope = args.slope
    if slope is None:       # f'(0), activation parameters at their given values
        from ..ir.step import ARGUMENT
        values = {p.symbol: params[p.name] for p in ir.params if p.name in params}
        slope = ir.fprime.subs(ARGUMENT, 0).subs(values)
        if slope.free_symbols:
            raise ValueError("give --slope, or --param values for the activation's parameters")
        slope = float(slope)
    cert = step_stability(layer, {k: params[k] for k in names}, spacing=spacing, omega=omega, slope=slope,
                          boundary=options.get("boundary", "periodic"))
    text.append("stability" + ("" if ir.linear else " (linearised at z = 0)") + ": " + str(cert))
    data["stability"] = {k: (v if isinstance(v, (bool, str)) else float(v)) for k, v in vars(cert).items()}
    return data, "\n".join(text), {}


def run(args) -> int:
    source = Path(args.source)
    if not source.is_file():
        raise OSError(f"{source}: no such file")
    kind = _inspect_matrix if source.suffix.lower() == ".npy" else _inspect_spec
    data, text, figures = kind(args)
    if args.out:
        from .plots import save
        data["plots"] = [str(save(fig, Path(args.out) / f"{name}.{args.format}")) for name, fig in figures.items()]
    if args.json:
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print(text)
        for path in data.get("plots", []):
            print(f"wrote {path}")
    return 0
