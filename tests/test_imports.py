"""Every module of the project imports, and so does every import inside a function.

A file moved without its importers fails here: the module-level imports by
importing each module (command modules, ``__main__``, are left out: importing
them runs the command), the deferred ones (inside functions, where the CLIs put
TensorFlow-heavy imports) by resolving each ``import``/``from ... import`` of a
project package statically.
"""

import ast
import importlib
import pathlib
import pkgutil

import pytest

PACKAGES = ["keras_metaopt", "trainers", "serving", "tools", "benchmarks", "probes"]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _modules():
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            yield info.name


MODULES = sorted(_modules())


def _project_imports(path: pathlib.Path):
    """(line, module, name or None) for each import of a project package."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, node.module, alias.name


def _unresolved(path: pathlib.Path, root: pathlib.Path = ROOT):
    problems = []
    for line, module, name in _project_imports(path):
        if module.split(".")[0] not in PACKAGES + ["tests"]:
            continue
        where = f"{path.relative_to(root)}:{line}"
        try:
            target = importlib.import_module(module)
        except ModuleNotFoundError as e:
            problems.append(f"{where}: no module {e.name!r} (import {module})")
            continue
        if name is None or name == "*" or hasattr(target, name):
            continue
        try:
            importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            problems.append(f"{where}: {module} has no {name!r}")
    return problems


def test_every_package_has_modules():
    assert {name.split(".")[0] for name in MODULES} == set(PACKAGES)
    assert "serving.export.exporter" in MODULES
    assert "trainers.meta" in MODULES


@pytest.mark.parametrize("name", [m for m in MODULES if not m.endswith(".__main__")])
def test_module_imports(name):
    importlib.import_module(name)


def test_every_deferred_import_resolves():
    files = [p for pkg in PACKAGES + ["tests"] for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 50
    problems = [problem for path in sorted(files) for problem in _unresolved(path)]
    assert problems == []


def test_a_stale_deferred_import_is_reported(tmp_path):
    moved = tmp_path / "bench.py"
    moved.write_text(
        "def export():\n"
        "    from serving.exporter import Exporter\n"
        "    from serving.export import no_such_name\n",
        encoding="utf-8",
    )
    assert _unresolved(moved, root=tmp_path) == [
        "bench.py:2: no module 'serving.exporter' (import serving.exporter)",
        "bench.py:3: serving.export has no 'no_such_name'",
    ]
