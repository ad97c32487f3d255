"""Every example in examples/ runs (small sizes), and the demo runs end to end."""
import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))
SPECS = sorted((ROOT / "examples").glob("*.toml"))
#: A derivative of the field: z_q, z_qq, d/dq, d²/dq², ∂_q.
DERIVATIVE = re.compile(r"\bz_q+\b|d\S?/dq|∂")
#: An equation: a name, "=" or "<-", and a right-hand side with the field z.
EQUATION = re.compile(r"\b\w+\s*(=|<-)\s*[^=\n]*\bz\b")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs(script, monkeypatch, capsys):
    monkeypatch.setenv("NPDEGEN_EXAMPLE_STEPS", "40")
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_examples_state_their_equation(script):
    """Each script opens with a module docstring whose first lines state the layer's equation: a
    derivative of the field, and an equation (or the moments W_k = ... it is built from)."""
    doc = ast.get_docstring(ast.parse(script.read_text()))
    assert doc, f"{script.name} should open with a docstring"
    head = "\n".join(doc.splitlines()[:6])
    assert DERIVATIVE.search(head), f"{script.name}: no derivative of z in the docstring's first lines"
    assert EQUATION.search(head) or re.search(r"\bW_?\d\s*=", head), f"{script.name}: no equation stated"


def _normalised(text):
    text = re.sub(r"diff\(z,\s*q,\s*(\d)\)", lambda m: "z_" + "q" * int(m.group(1)), text)
    return re.sub(r"[\s*]|\(q\)", "", text)                # "R(q) z" is "R*z" with R heterogeneous


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_spec_examples_state_their_transform(spec):
    """Each TOML example's header comment states ``Z = <its transform> ...`` for the transform it holds."""
    from npdegen.spec.specfile import read_spec_file, tomllib
    layer = tomllib.loads(spec.read_text())["layer"]
    read_spec_file(spec)                                   # and it is a valid spec
    header = [line.lstrip("# ") for line in spec.read_text().splitlines() if line.startswith("#")]
    if layer.get("kind") == "conservation_law":            # states its conservative update and flux
        assert any(re.match(r"\s*Z\s*=\s*z\s*-\s*\(F\(", line) for line in header), spec.name
        assert any(layer["flux"].replace("**", "^") in line.replace("**", "^").replace(" ", "") or
                   "g(z)" in line for line in header), spec.name
        return
    transform = layer["transform"]
    equations = [_normalised(line) for line in header if re.match(r"\s*Z\s*=", line)]
    assert any(eq.startswith("Z=" + _normalised(transform)) for eq in equations), (spec.name, equations)


def test_demo_cli(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run([sys.executable, "-m", "npdegen.cli", "demo", "--out", str(out), "--steps", "30"],
                         capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 0, res.stderr
    for needle in ("Stencil", "reaction", "advection", "diffusion", "homogeneous", "heterogeneous",
                   "time-dependent", "final loss"):
        assert needle in res.stdout
    assert list((out / "kernels").glob("*.py"))
    pytest.importorskip("matplotlib")
    assert (out / "demo.png").stat().st_size > 10_000
