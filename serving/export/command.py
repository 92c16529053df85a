"""Export a trained run as a TF Serving SavedModel.

Usage:
    python -m serving.export --run-dir runs/meta-en-el-ur --out models/nli/1
"""

import sys

from keras_metaopt import cli
from serving.export.precision import DEFAULT_ATOL, DEFAULT_FLOAT32_ATOL, PRECISIONS

PROG = "python -m serving.export"


def build_parser():
    parser = cli.parser(
        PROG,
        description=(
            "Export RUN/model (a keras-hub TextClassifier preset) with its run "
            "metadata as a SavedModel in TF Serving's MODEL_BASE/VERSION layout: "
            "signatures serving_default (premise/hypothesis strings, tokenized in "
            "the graph), predict_token_ids and classify; a warmup file and "
            "metadata JSON in assets.extra. The export is reloaded and compared "
            "with the in-memory model before it is moved into place."
        ),
    )
    parser.add_argument(
        "--run-dir",
        required=True,
        help="trained run directory holding model/, run.json and (optional) rates.json",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="MODEL_BASE/VERSION to create; VERSION must be an integer and must "
        "not exist yet (e.g. models/nli/1)",
    )
    parser.add_argument(
        "--model-name",
        default="nli",
        help="model name written into the warmup requests",
    )
    parser.add_argument(
        "--check-pairs",
        metavar="TSV",
        help="extra pairs for the export check, a pair TSV as the trainers read "
        "it (header premise<TAB>hypothesis[<TAB>label]); built-in multilingual "
        "pairs are always checked",
    )
    parser.add_argument(
        "--atol",
        type=float,
        help="largest allowed absolute difference between reloaded and in-memory "
        "probabilities (default: "
        + ", ".join(f"{v:g} in {k}" for k, v in DEFAULT_ATOL.items())
        + ")",
    )
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="run the encoder as one XLA computation (about 1.5x faster for e5-small on a CPU, "
        "see BENCHMARKS.md); the server then needs XLA: tensorflow_model_server "
        "--xla_cpu_compilation_enabled=true, or python -m serving.server "
        "--xla-cpu-compilation-enabled",
    )
    parser.add_argument(
        "--length-multiple",
        type=int,
        help="round each batch's length up to a multiple of this (bounds how "
        "often XLA compiles); default: 8 with --jit-compile, else 1",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy the exported model computes in: "
        "mixed_bfloat16 runs the layers in bfloat16 (weights stay float32): "
        "faster for batches, but slower than float32 for single pairs on a CPU "
        "(a float32 XLA export is fastest there); its probabilities are checked against the "
        "float32 model (--float32-atol), see BENCHMARKS.md",
    )
    parser.add_argument(
        "--float32-atol",
        type=float,
        default=DEFAULT_FLOAT32_ATOL,
        help="with --precision mixed_bfloat16: largest allowed absolute "
        "difference between the export's probabilities and the float32 "
        "model's on the check pairs",
    )
    cli.add_log_level_flag(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(args.log_level)
    for flag, value in (("--atol", args.atol), ("--float32-atol", args.float32_atol)):
        if value is not None and not (value >= 0):  # also NaN
            cli.error(PROG, f"{flag} {value}: must be a number >= 0")
            return cli.EXIT_BAD_INPUT
    if args.length_multiple is not None and args.length_multiple < 1:
        cli.error(
            PROG,
            f"--length-multiple {args.length_multiple}: must be an integer >= 1",
        )
        return cli.EXIT_BAD_INPUT
    cli.import_tensorflow()  # after the flag checks: a bad flag answers at once
    from keras_metaopt.data.tsv import read_pair_tsv
    from serving.export.export_error import ExportError
    from serving.export.exporter import Exporter

    try:
        extra = []
        if args.check_pairs:
            tsv = read_pair_tsv(args.check_pairs)
            extra = list(zip(tsv.premises, tsv.hypotheses, strict=True))
        exporter = Exporter(
            args.run_dir,
            args.out,
            args.model_name,
            args.atol,
            extra,
            jit_compile=args.jit_compile,
            length_multiple=args.length_multiple,
            precision=args.precision,
            float32_atol=args.float32_atol,
        )
        path = exporter.export()
    except (ValueError, OSError) as err:  # bad input: nothing was written
        cli.error(PROG, err)
        return cli.EXIT_BAD_INPUT
    except ExportError as err:  # the export does not reproduce the model
        cli.error(PROG, err)
        return cli.EXIT_ERROR
    except Exception as err:
        if args.log_level == "DEBUG":
            raise
        cli.error(
            PROG,
            f"{type(err).__name__}: {err} "
            "(rerun with --log-level debug for the traceback)",
        )
        return cli.EXIT_ERROR
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
