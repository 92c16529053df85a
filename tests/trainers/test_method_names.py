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


def test_a_flag_another_overrides_is_no_difference_for_resume_or_pooling():
    from trainers.output_checks import differing_flags
    from trainers.reporting import pooling_problems

    parser = meta.build_parser()
    steps = ["--en-steps", "300", "--aux-steps", "20"]
    stored = vars(parser.parse_args(BASE + steps + ["--en-epochs", "2"]))
    new = vars(parser.parse_args(BASE + steps))  # --en-epochs 1, unused as before
    assert differing_flags(parser, stored, new) == []
    by_epochs = vars(parser.parse_args(BASE + ["--aux-steps", "20"]))
    assert differing_flags(parser, stored, by_epochs) == [
        ("en_epochs", 2.0, 1.0),
        ("en_steps", 300, None),
    ]
    # Seeds of one method: results.json's own aux list (before it recorded the
    # settings), and settings that differ only in an overridden flag.
    old = {"method": "m", "seed": 0, "preset": "p", "aux": ["el", "ur"]}
    settings = {"preset": "p", "aux": "el,ur", "en_steps": 300}
    runs = [
        old,
        {"method": "m", "seed": 1, "settings": {**settings, "en_epochs": 2.0}},
        {"method": "m", "seed": 2, "settings": {**settings, "en_epochs": 1.0}},
    ]
    assert pooling_problems(runs, ["a", "b", "c"]) == []
    runs[2]["settings"]["aux"] = "el"
    assert pooling_problems(runs, ["a", "b", "c"]) == [
        "the runs of m differ in --aux (el,ur in a, b; el in c)"
    ]


def test_seeds_pool_with_their_own_rates_file_and_resume_reads_paths_as_paths(
    tmp_path,
):
    """--rates-from and --aux-seed are per seed (each seed replays its own meta
    run, draws its own auxiliary stage), like --init-from; on resume the same
    rates file by another spelling is no change."""
    from trainers import finetune
    from trainers.output_checks import differing_flags
    from trainers.reporting import pooling_problems

    settings = {"preset": "p", "aux": "el,ur", "learning_rate": 3e-5}
    runs = [
        {
            "method": "r",
            "seed": s,
            "settings": {**settings, "rates_from": f"m-{s}", "aux_seed": 100 + s},
        }
        for s in range(3)
    ]
    assert pooling_problems(runs, ["a", "b", "c"]) == []
    parser = finetune.build_parser()
    base = BASE + ["--rates-from"]
    (tmp_path / "rates.json").write_text("{}")
    stored = vars(parser.parse_args(base + [str(tmp_path / "rates.json")]))
    again = vars(parser.parse_args(base + [f"{tmp_path}/./rates.json"]))
    assert differing_flags(parser, stored, again) == []
    other = vars(parser.parse_args(base + [str(tmp_path / "other.json")]))
    assert [d for d, _, _ in differing_flags(parser, stored, other)] == ["rates_from"]
