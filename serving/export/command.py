"""Export a trained run as a TF Serving SavedModel.

Usage:
    python -m serving.export --run-dir runs/meta-en-el-ur --out models/nli/1
"""

import argparse
import logging
import os
import sys

from serving.log_level import add_log_level_flag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.export",
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
        help="model name written into the warmup requests (default: %(default)s)",
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
        default=1e-5,
        help="largest allowed absolute difference between reloaded and in-memory "
        "probabilities (default: %(default)g)",
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
    add_log_level_flag(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_metaopt.data.tsv import read_pair_tsv
    from serving.export.export_error import ExportError
    from serving.export.exporter import Exporter

    if not (args.atol >= 0):  # also NaN
        print(
            f"serving.export: error: --atol {args.atol}: must be a number >= 0",
            file=sys.stderr,
        )
        return 2
    if args.length_multiple is not None and args.length_multiple < 1:
        print(
            f"serving.export: error: --length-multiple {args.length_multiple}: "
            "must be an integer >= 1",
            file=sys.stderr,
        )
        return 2
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
        )
        path = exporter.export()
    except (ValueError, OSError) as err:  # bad input: nothing was written
        print(f"serving.export: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except ExportError as err:  # the export does not reproduce the model
        print(f"serving.export: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if args.log_level == "DEBUG":
            raise
        print(
            f"serving.export: error: {type(err).__name__}: {_one_line(err)} "
            "(rerun with --log-level DEBUG for the traceback)",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


def _one_line(err):
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
