"""The `>>>` examples of these modules run, as written (keras-hub runs its own).

Modules whose examples need a trained run, a server or a checkpoint on disk are
not listed; their examples show a call, not a session to paste.
"""

import doctest
import importlib

import pytest

RUNNABLE = (
    "keras_metaopt.formats",
    "keras_metaopt.layer_groups",
    "keras_metaopt.meta_optimizer",
    "keras_metaopt.meta_step",
    "keras_metaopt.train_step",
    "keras_metaopt.rate_param",
    "keras_metaopt.rates_file",
    "keras_metaopt.run_record",
    "keras_metaopt.data.labels",
    "keras_metaopt.data.nli_pairs",
    "keras_metaopt.data.data_format_error",
    "keras_metaopt.data.split_spec",
    "keras_metaopt.testing",
    "serving.export.exporter",
)


@pytest.mark.parametrize("name", RUNNABLE)
def test_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module) if t.examples]
    assert tests, f"{name} has no examples"
    if (
        name == "serving.export.exporter"
    ):  # only parse_version_dir's example is standalone
        tests = [t for t in tests if t.name.endswith("parse_version_dir")]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
