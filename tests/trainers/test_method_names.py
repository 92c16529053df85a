"""The method names the trainers give their runs (results.json's "method"),
and `--method-name`, which names a run as a benchmark row does."""

import pytest

from trainers import finetune, meta

BASE = ["--output-dir", "x", "--data-dir", "d"]


@pytest.mark.parametrize(
    "trainer, flags, name",
    [
        (finetune, [], "finetune"),
        (finetune, ["--aux", ""], "english-only"),
        (finetune, ["--freeze-bottom", "3"], "freeze-bottom-3"),
        (finetune, ["--layer-decay", "0.9", "--learning-rate", "3e-5"],
         "layer-decay-0.9-lr3e-05"),
        (meta, [], "meta"),
        (meta, ["--rates", "shared", "--meta", "joint"], "meta-shared-joint"),
        (meta, ["--meta-init", "pretrained", "--rates-param", "exp"], "meta-exp"),
        (meta, ["--meta-init", "english", "--meta", "joint"],
         "meta-joint-english-init"),
        (finetune, ["--aux", "", "--method-name", "english-only-fast"],
         "english-only-fast"),
        (meta, ["--meta-init", "pretrained", "--method-name", "meta-paper-100"],
         "meta-paper-100"),
    ],
)  # fmt: skip
def test_method_names(trainer, flags, name):
    args = trainer.build_parser().parse_args(BASE + flags)
    assert trainer.method_name(args) == name


def test_another_method_name_resumes_the_run():
    from trainers.output_checks import differing_flags

    parser = meta.build_parser()
    stored = vars(parser.parse_args(BASE))
    renamed = vars(parser.parse_args(BASE + ["--method-name", "meta-row"]))
    assert differing_flags(parser, stored, renamed) == []
    reseeded = vars(parser.parse_args(BASE + ["--seed", "1"]))
    assert differing_flags(parser, stored, reseeded) == [("seed", 0, 1)]
