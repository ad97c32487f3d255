"""The wheel ships the templates, and an installed npdegen finds them."""
import importlib.metadata as md
from pathlib import Path

import pytest

from npdegen.codegen.render import template_dir

ROOT = Path(__file__).resolve().parent.parent


def test_templates_found():
    assert (template_dir() / "step_numpy" / "module.py.j2").is_file()


def test_installed_distribution_contains_templates():
    try:
        files = md.files("npdegen") or []
    except md.PackageNotFoundError:
        pytest.skip("npdegen is not installed (running from a source tree)")
    names = {f.as_posix() for f in files}
    if not any(n.startswith("npdegen/") and n.endswith(".py") for n in names):
        pytest.skip("editable install: the package is served from the source tree")
    assert "npdegen/templates/step_numpy/module.py.j2" in names
    assert "npdegen/theory.md" in names                       # the theory ships with the wheel
    for template in (ROOT / "templates").rglob("*.j2"):
        assert f"npdegen/templates/{template.relative_to(ROOT / 'templates').as_posix()}" in names


def test_theory_document_is_found(capsys):
    from npdegen.cli import main
    assert main(["theory"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "theory.md" and "§10" in path.read_text(encoding="utf-8")
