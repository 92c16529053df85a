"""pyproject.toml declares what requirements.txt pins, and builds a wheel of
the library and its commands."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(requirement):
    """The normalised project name of a requirement line (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_declares_every_pinned_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [_name(r) for r in project["dependencies"]]
    dev = [_name(r) for r in project["optional-dependencies"]["dev"]]
    pinned = [
        _name(line)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert sorted(declared + dev) == sorted(pinned)
    assert len(set(declared)) == len(declared)
    assert dev == ["pytest", "ruff"]


def test_every_command_package_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in ("keras_metaopt", "trainers", "serving", "tools", "probes"):
        assert f"{package}*" in include
        assert (ROOT / package / "__init__.py").is_file()
    data = config["tool"]["setuptools"]["package-data"]["serving.server"]
    assert sorted(p.name for p in (ROOT / "serving" / "server").glob("*.config"))
    assert data == ["*.config"]
