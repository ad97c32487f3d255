"""Command line: ``npdegen demo``, ``npdegen generate SPEC``, ``npdegen explain SPEC``, ``npdegen inspect SPEC|W.npy``."""
from __future__ import annotations

import argparse
import sys

from ._version import __version__


def _generate(args) -> int:
    from .layer import load_spec
    layer, options = load_spec(args.spec)
    for key in ("backend", "boundary", "dtype"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if options.get("backend") == "auto":  # the backend this machine would run: cupy with a usable GPU
        from .runtime.backends import get_backend
        options["backend"] = get_backend("auto").name
    for path in layer.generate(args.out, **options):
        print(path)
    return 0


def _explain(args) -> int:
    from .layer import load_spec
    layer, _ = load_spec(args.spec)
    print(layer)
    for j, w in layer.stencil().items():
        print(f"  w[{j:+d}] = {w}")
    print(layer.explain())
    return 0


def _cache(args) -> int:
    from .runtime.cache import cache_info, clear_cache
    if args.action == "clear":
        print(f"removed {clear_cache()} file(s)")
        return 0
    info = cache_info()
    print(f"folder:  {info['folder']}\nfiles:   {info['files']}\nbytes:   {info['bytes']}")
    if info["corrupt"]:
        print(f"corrupt: {', '.join(info['corrupt'])} (regenerated on next use)")
    return 0


def _demo(args) -> int:
    from .demo import run
    run(out=args.out, steps=args.steps, plot=not args.no_plot)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="npdegen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"npdegen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the built-in neural ADR example")
    demo.add_argument("--out", default="npdegen-demo", help="folder for the kernel and the plot")
    demo.add_argument("--steps", type=int, default=300, help="optimizer steps per family")
    demo.add_argument("--no-plot", action="store_true")
    demo.set_defaults(func=_demo)
    gen = sub.add_parser("generate", help="write the generated kernel of a TOML spec")
    gen.add_argument("spec")
    gen.add_argument("--out", default="generated")
    gen.add_argument("--backend", choices=("numpy", "cupy", "auto", "numba"))
    gen.add_argument("--boundary", choices=("periodic", "dirichlet", "neumann"))
    gen.add_argument("--dtype", choices=("float32", "float64"))
    gen.set_defaults(func=_generate)
    exp = sub.add_parser("explain", help="print the stencil and the physics of a TOML spec")
    exp.add_argument("spec")
    exp.set_defaults(func=_explain)
    cache = sub.add_parser("cache", help="show or clear the kernel cache")
    cache.add_argument("action", choices=("info", "clear"))
    cache.set_defaults(func=_cache)
    from .inspect.cli import add_parser as add_inspect
    add_inspect(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"npdegen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
