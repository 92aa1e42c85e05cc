"""The host-side packages are layers that point one way, read from the source
(``ast``, nothing imported, no VMs):

  thrashlab (the floor: lab file, paths, progress, apt sources)
    -> localvm, collector (machines, results)
    -> analysis
    -> thrashlab_job (the main job, the benchmark, the thrashlab command)

A package imports only the layers below it: every import statement counts,
at the top of a module or inside a function, and so does
``importlib.import_module`` with a literal name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the packages it must not import (those above it, or beside it and not below)
FORBIDDEN = {
    "thrashlab": {"localvm", "collector", "analysis", "thrashlab_job"},
    "localvm": {"analysis", "thrashlab_job"},
    "collector": {"analysis", "thrashlab_job"},
    "analysis": {"localvm", "collector", "thrashlab_job"},
}


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path, root: Path = ROOT) -> list:
    """(line, absolute module name) of every import in the file, in line order;
    relative ones resolved against the module's own package, None when they
    climb above the top-level package."""
    return sorted(_imports(path, root), key=lambda found: found[0])


def _imports(path: Path, root: Path):
    package = path.relative_to(root).parts[:-1]  # a module's package, and __init__.py's own
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module
                continue
            if node.level > len(package):
                yield node.lineno, None
                continue
            base = package[:len(package) - node.level + 1]
            yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) == "import_module")):
            yield node.lineno, node.args[0].value


def test_the_layers_exist():
    for package in FORBIDDEN:
        assert modules(package), f"{package}/ has no module: the layer test reads nothing"
    assert (ROOT / "thrashlab_job" / "main.py").exists()


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_a_package_imports_no_layer_above_it(package):
    wrong = []
    for path in modules(package):
        where = path.relative_to(ROOT)
        for line, name in imports(path):
            if name is None:
                wrong.append(f"{where}:{line}: a relative import that leaves {package}/")
            elif name.split(".")[0] in FORBIDDEN[package]:
                wrong.append(f"{where}:{line}: imports {name}")
    assert not wrong, (f"{package}/ must not import {', '.join(sorted(FORBIDDEN[package]))}:\n  "
                       + "\n  ".join(wrong))


def test_the_reader_finds_every_kind_of_import(tmp_path):
    # The reader itself: absolute, relative (inside and escaping) and import_module.
    pkg = tmp_path / "thrashlab" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("import os\nfrom .. import lab\nfrom ...x import y\n"
                              "def f():\n    from thrashlab_job.job import Job\n"
                              "    importlib.import_module('analysis.case2')\n")
    assert imports(pkg / "m.py", tmp_path) == [(1, "os"), (2, "thrashlab"), (3, None),
                                               (5, "thrashlab_job.job"), (6, "analysis.case2")]
