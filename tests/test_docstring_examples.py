"""Every `>>>` example in keras_metaopt, trainers, serving, tools, benchmarks and
probes runs here, as written (keras-hub runs its own).

A module with a `>>>` example must be listed in RUNNABLE (checked by reading the
files, without importing them), every one of its `>>>` lines must belong to an
example that doctest finds, and none may be skipped. An example that needs a
trained run, a server, the network, a data directory or a big model is a plain
indented code block after a sentence that says what it needs ("Usage (needs a
running server):"), not a `>>>` session.
"""

import doctest
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_metaopt", "trainers", "serving", "tools", "benchmarks", "probes")
PROMPT = re.compile(r"^\s*>>>", re.MULTILINE)

RUNNABLE = (
    "keras_metaopt.formats",
    "keras_metaopt.group_names",
    "keras_metaopt.layer_groups",
    "keras_metaopt.meta_optimizer",
    "keras_metaopt.meta_step",
    "keras_metaopt.train_step",
    "keras_metaopt.rate_param",
    "keras_metaopt.rates_file",
    "keras_metaopt.run_record",
    "keras_metaopt.state_file",
    "keras_metaopt.data.labels",
    "keras_metaopt.data.nli_pairs",
    "keras_metaopt.data.data_format_error",
    "keras_metaopt.data.split_spec",
    "keras_metaopt.models.einsum_matmul",
    "keras_metaopt.models.float32_gelu",
    "keras_metaopt.models.float32_residual",
    "keras_metaopt.testing",
    "keras_metaopt.testing.random_run_dir",
    "serving.client.tensor_proto",
    "serving.export.export_error",
    "serving.export.exporter",
    "serving.server.batching_config",
    "serving.server.in_flight",
    "serving.server.request_batcher",
    "serving.server.request_error",
    "tools.e5_parity",
    "tools.import_e5_small",
)


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules_with_prompts():
    """{module name: number of `>>>` lines} for every source file that has one."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            count = len(PROMPT.findall(path.read_text(encoding="utf-8")))
            if count:
                found[_module_name(path)] = count
    return found


def test_every_module_with_examples_is_runnable():
    prompts = _modules_with_prompts()
    missing = sorted(set(prompts) - set(RUNNABLE))
    assert not missing, (
        f"{missing} have `>>>` examples but are not in RUNNABLE: make them run "
        "and list the module, or turn them into plain code blocks"
    )
    stale = sorted(set(RUNNABLE) - set(prompts))
    assert not stale, f"{stale} are in RUNNABLE but have no `>>>` example"


@pytest.mark.parametrize("name", RUNNABLE)
def test_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module) if t.examples]
    assert tests, f"{name} has no examples"
    examples = [e for t in tests for e in t.examples]
    source = pathlib.Path(module.__file__).read_text(encoding="utf-8")
    assert len(examples) == len(PROMPT.findall(source)), (
        f"{name}: some `>>>` lines are outside the docstrings doctest finds"
    )
    skipped = [e.source for e in examples if e.options.get(doctest.SKIP)]
    assert not skipped, f"{name}: skipped examples {skipped}"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
