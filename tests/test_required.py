"""Missing test inputs skip locally and fail in CI; CI runs README's test command."""

import pathlib
import re

import pytest

from tests import required

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_missing_input_skips_locally_and_fails_when_required(monkeypatch):
    monkeypatch.delenv(required.REQUIRE_ALL, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no data here"):
        required.missing("no data here")
    with pytest.raises(pytest.skip.Exception, match="pip install nothing-such"):
        required.import_or_missing("no_such_module_xyz", "nothing-such")
    assert required.import_or_missing("json", "-") is __import__("json")

    monkeypatch.setenv(required.REQUIRE_ALL, "1")
    with pytest.raises(pytest.fail.Exception, match="KERAS_METAOPT_REQUIRE_ALL=1"):
        required.missing("no data here")
    with pytest.raises(pytest.fail.Exception, match="no module no_such_module_xyz"):
        required.import_or_missing("no_such_module_xyz", "nothing-such")


def test_ci_runs_readmes_test_command_with_every_input_required():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Test\n", 1)[1].split("\n## ", 1)[0]
    (command,) = re.findall(r"```bash\n(.+?)\n```", section, re.S)
    assert "-rs" in command.split()  # skip reasons are printed
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert f"{required.REQUIRE_ALL}=1 {command}" in ci
    assert "ruff check ." in ci and "ruff format --check ." in ci
