"""Command line: ``npdegen demo``, ``npdegen generate SPEC``, ``npdegen explain SPEC``, ``npdegen inspect SPEC|W.npy``,
``npdegen cache info|clear`` (also ``python -m npdegen``).

Errors: any exception becomes one line ``npdegen: error: …`` on stderr and exit status 2 (the
traceback only with ``--debug``); Ctrl-C exits with 130. When the reader of the output goes away
(``npdegen inspect … | head``) the command stops quietly with status 141, like other Unix tools.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from ._version import __version__


def _generate(args) -> int:
    from .load import load_spec
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
    from .load import load_spec
    layer, _ = load_spec(args.spec)
    print(layer)
    ir = layer.step_ir
    if not ir.linear:       # a nonlinear layer: its site expression and how it depends on each access
        print(f"  G = {ir.site}   (z_<offset> = z[i + offset], p_<name> = parameter, Delta<k> = spacing)")
        for a, d in zip(ir.access_symbols, ir.d_access):
            print(f"  dG/d{a} = {d}")
        return 0
    for j, w in layer.stencil().items():
        print(f"  w[{j:+d}] = {w}" if isinstance(j, int) else f"  w{list(j)} = {w}")
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


def theory_path() -> Path:
    """The theory document: ``npdegen/theory.md`` in an installed wheel, ``docs/theory.md`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "theory.md", here.parent / "docs" / "theory.md"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("npdegen's theory.md is missing (broken installation?)")


def _theory(args) -> int:
    print(theory_path())
    return 0


def _tasks(args) -> int:
    from .tasks.__main__ import main as tasks_main
    return tasks_main(list(args.args))


def _demo(args) -> int:
    from .demo import run
    run(out=args.out, steps=args.steps, plot=not args.no_plot)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``npdegen`` (every command and option has a help text)."""
    parser = argparse.ArgumentParser(prog="npdegen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"npdegen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, text, func):
        p = sub.add_parser(name, help=text, description=text[:1].upper() + text[1:] + ".", parents=[common])
        p.set_defaults(func=func)
        return p

    demo = command("demo", "run the built-in neural ADR example", _demo)
    demo.add_argument("--out", default="npdegen-demo", help="folder for the kernel and the plot (default %(default)s)")
    demo.add_argument("--steps", type=int, default=300, help="optimizer steps per family (default %(default)s)")
    demo.add_argument("--no-plot", action="store_true", help="skip the plot (no matplotlib needed)")
    gen = command("generate", "write the generated kernel of a TOML spec", _generate)
    gen.add_argument("spec", help="the TOML layer spec (format: npdegen.spec.specfile)")
    gen.add_argument("--out", default="generated", help="folder for the generated files (default %(default)s)")
    gen.add_argument("--backend", choices=("numpy", "cupy", "auto", "numba"),
                     help="target backend (default: the spec's [compile] backend, else numpy)")
    gen.add_argument("--boundary", choices=("periodic", "dirichlet", "neumann"),
                     help="boundary condition (default: the spec's, else periodic)")
    gen.add_argument("--dtype", choices=("float32", "float64"), help="floating-point type (default: the spec's)")
    exp = command("explain", "print the stencil and the physics of a TOML spec", _explain)
    exp.add_argument("spec", help="the TOML layer spec")
    command("theory", "print the path of the theory document (the mathematics, with its sources)", _theory)
    cache = command("cache", "show or clear the kernel cache", _cache)
    cache.add_argument("action", choices=("info", "clear"),
                       help="info: folder, files and corrupt entries; clear: delete npdegen's files")
    from .inspect.cli import add_parser as add_inspect
    add_inspect(sub, parents=[common])
    from .estimator.cli import add_parser as add_fit
    add_fit(sub, parents=[common])
    tasks = command("tasks", "list, make or verify the benchmark tasks (npdegen.tasks: list | make NAME | verify)",
                    _tasks)
    tasks.add_argument("args", nargs=argparse.REMAINDER, help="arguments of python -m npdegen.tasks")
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away: send what is left to /dev/null (no error at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print("npdegen: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into a clean message
        if debug:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        kind = "" if isinstance(exc, (ValueError, TypeError, OSError)) else f"{type(exc).__name__}: "
        try:
            print(f"npdegen: error: {kind}{message}" + ("" if debug else " (--debug for the traceback)"),
                  file=sys.stderr)
        except BrokenPipeError:
            pass
        return 2


if __name__ == "__main__":
    sys.exit(main())
