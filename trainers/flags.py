"""The trainers' command lines: their flags, and how a command line is parsed.

`add_common_flags` is what every trainer (and the probes built on one) takes;
`add_meta_flags` and `add_baseline_flags` are `trainers.meta`'s and
`trainers.finetune`'s own. `parse_args` checks a whole command line before any
model is built (`trainers.validate`).

Nothing here imports TensorFlow: `--help` and a malformed flag answer before
it is loaded (`parse_args`).
"""

import json
import logging
import sys

from keras_metaopt import cli
from keras_metaopt.formats import RESULTS_JSON
from keras_metaopt.group_names import EMBEDDINGS
from keras_metaopt.rate_param import RATE_PARAMS

DEFAULT_LEARNING_RATE = 2e-5  # the paper's
# Keras's dtype policy names (`keras.config.set_dtype_policy`).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def add_common_flags(parser):
    """Flags shared by `trainers.finetune` and `trainers.meta`."""
    g = parser.add_argument_group("run")
    g.add_argument(
        "--output-dir", required=True, help="Run directory (resumed if it exists)."
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of weights init, shuffling, held-out picks.",
    )
    g.add_argument(
        "--aux-seed",
        type=int,
        metavar="N",
        help="Seed of the auxiliary stage's batches and dropout masks (default: "
        "--seed): another N draws that stage anew with the same English model and "
        "rates, to measure its noise.",
    )
    g.add_argument(
        "--method-name",
        metavar="NAME",
        help="The method's name in results.json and the tables (default: from "
        "the flags, e.g. finetune, english-only, meta-shared).",
    )
    g.add_argument(
        "--strategy",
        choices=["auto", "default", "mirrored", "multiworker"],
        default="auto",
        help="auto: MirroredStrategy when more than one GPU is visible; multiworker reads TF_CONFIG.",
    )
    g.add_argument(
        "--cpu-replicas",
        type=int,
        default=1,
        help="Split the CPU into this many logical devices (to try --strategy mirrored without GPUs).",
    )
    g.add_argument(
        "--checkpoint-every", type=int, default=100, help="Steps between checkpoints."
    )
    g.add_argument(
        "--log-every", type=int, default=10, help="Steps between logged losses."
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="trainers: start afresh in an --output-dir that holds a run (its "
        "models, checkpoints and results are deleted). Without it, a rerun must "
        "have the run's settings (only --log-every, --checkpoint-every, "
        "--state-every, --offload-states, --method-name, --log-level may "
        "differ) and resumes it.",
    )
    cli.add_log_level_flag(g)
    g = parser.add_argument_group("model")
    g.add_argument(
        "--preset",
        default="bert_base_multi",
        help="keras-hub preset name (bert_base_multi = mBERT), hf://..., or a local preset / HF checkpoint directory.",
    )
    g.add_argument(
        "--init-from",
        help="Skip the English stage: start from this stage-1 model (a run directory or its stage1/ preset).",
    )
    g.add_argument(
        "--sequence-length", type=int, default=128, help="Tokens per packed pair."
    )
    add_precision_flag(g)
    g.add_argument(
        "--freeze",
        default=EMBEDDINGS,
        help="Comma-separated layer groups that are never trained (paper: embeddings; '' for none).",
    )
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        required=True,
        help="TSV directory, official XNLI directory, or 'tfds'.",
    )
    g.add_argument("--aux", default="el,ur", help="Auxiliary source languages.")
    g.add_argument(
        "--en-split",
        default="train_mt",
        help="English training split (official layout: train).",
    )
    g.add_argument(
        "--aux-split", default="dev[:1245]", help="Auxiliary-language training split."
    )
    g.add_argument(
        "--eval-split",
        default="dev[1245:]",
        help="Evaluation split (official layout: test).",
    )
    g.add_argument(
        "--eval-languages",
        help="Comma-separated; default: every language of --eval-split.",
    )
    g.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="Count and report malformed rows instead of failing.",
    )
    g = parser.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=32, help="Global batch size.")
    g.add_argument(
        "--group-by-length",
        action="store_true",
        help="Batches of pairs of similar length (Hugging Face's group_by_length): "
        "the shuffled stream is cut into mega-batches of 50 batches, each sorted "
        "by length, and every batch is padded to its longest pair (a multiple of "
        "8) instead of nearly always to --sequence-length. Deterministic under "
        "--seed; every training stream of every stage.",
    )
    g.add_argument(
        "--learning-rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help="Base Adam learning rate (paper: 2e-5). Methods trained with another "
        "rate are named with a suffix, e.g. finetune-lr5e-05.",
    )
    g.add_argument(
        "--en-epochs",
        type=float,
        default=1.0,
        help="Epochs of the English stage (the paper: one).",
    )
    g.add_argument(
        "--en-steps",
        type=int,
        help="Steps of the English stage (overrides --en-epochs).",
    )
    g.add_argument(
        "--aux-epochs",
        type=float,
        default=2.0,
        help="Epochs of the auxiliary-language stage.",
    )
    g.add_argument(
        "--aux-steps",
        type=int,
        help="Steps of the auxiliary stage (overrides --aux-epochs).",
    )
    return parser


def add_precision_flag(parser):
    """`--precision`: the Keras dtype policy the model computes in."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy of the model's layers: mixed_bfloat16 computes "
        "in bfloat16 while weights, optimizer state, rates and losses stay "
        "float32 (faster on CPUs with AVX512_BF16 and on GPUs with bfloat16). "
        "mixed_float16 needs loss scaling and is refused.",
    )


def add_meta_flags(parser):
    """`trainers.meta`'s flags: Algorithm 1's N, L, φ and the ablations."""
    g = parser.add_argument_group("meta-training (Algorithm 1)")
    g.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="N: rounds, each with a fresh learner. 0: no meta-training, stage 3 "
        "with the initial rates λ(φ0) (the ablation of learning φ).",
    )
    g.add_argument(
        "--meta-interval", type=int, default=15, help="L: inner steps per φ update."
    )
    g.add_argument(
        "--meta-updates-per-round",
        type=int,
        default=10,
        help="φ updates per round (a round is this × L inner steps).",
    )
    g.add_argument(
        "--meta-lr", type=float, default=0.05, help="Adam learning rate of φ."
    )
    g.add_argument(
        "--initial-phi",
        default="random",
        help="'random' (φ ~ N(0, 1), seeded) or a number for every layer.",
    )
    g.add_argument(
        "--rates",
        choices=["layerwise", "shared"],
        default="layerwise",
        help="One φ per layer, or one shared φ (ablation).",
    )
    g.add_argument(
        "--meta",
        choices=["heldout", "joint"],
        default="heldout",
        help="φ from a held-out language's loss, or from the training loss (ablation).",
    )
    g.add_argument(
        "--meta-init",
        choices=["english", "pretrained"],
        default="pretrained",
        help="Where each round starts: the pretrained encoder with a fresh head "
        "(the paper's Algorithm 1), or the English model of stage 1.",
    )
    g.add_argument(
        "--rates-param",
        choices=RATE_PARAMS,
        default="sigmoid",
        help="λ(φ): sigmoid (the paper's, λ < 1), scaled-sigmoid (2σ, λ < 2) or "
        "exp (λ ≤ 4); with the last two φ = 0 is plain fine-tuning.",
    )
    g.add_argument(
        "--meta-gradient",
        choices=["first_order", "exact"],
        default="first_order",
        help="first_order (the paper's) or exact: reverse mode through the L "
        "inner steps (second order, about 3x the time of a window).",
    )
    g.add_argument(
        "--state-every",
        type=int,
        default=1,
        help="exact: keep every k-th inner state and recompute the others "
        "(memory ~ L/k + k states instead of L + 1).",
    )
    g.add_argument(
        "--recompute-layers",
        action="store_true",
        help="exact: recompute each transformer layer in the Hessian-vector "
        "products instead of keeping its activations (less memory, more time; "
        "the same meta-gradient to round-off).",
    )
    g.add_argument(
        "--offload-states",
        action="store_true",
        help="exact: keep the window's stored inner states in files under "
        "OUTPUT_DIR/exact-states instead of memory (memory ~ --state-every "
        "states; the same results bit for bit; with --state-every 1 nothing "
        "is recomputed).",
    )
    g.add_argument(
        "--hvp-micro-batches",
        type=int,
        default=1,
        help="exact: compute each Hessian-vector product over this many "
        "micro-batches of a batch, one after the other (less memory; without "
        "--offload-states one more forward and backward pass a step; the same "
        "meta-gradient to round-off, the same training steps bit for bit).",
    )
    g.add_argument(
        "--meta-clipnorm",
        type=float,
        help="Clip the norm of each meta-gradient dL/dφ to this value.",
    )
    return parser


def add_baseline_flags(parser):
    """`trainers.finetune`'s flags: which baseline stage 2 trains."""
    g = parser.add_argument_group("baseline").add_mutually_exclusive_group()
    g.add_argument(
        "--freeze-bottom",
        type=int,
        default=0,
        metavar="K",
        help="Also freeze the bottom K transformer layers in stage 2 (Wu & Dredze 2019).",
    )
    g.add_argument(
        "--layer-decay",
        type=float,
        metavar="D",
        help="Layer-wise learning-rate decay in stage 2 (ELECTRA-style), e.g. 0.9.",
    )
    g.add_argument(
        "--rates-from",
        metavar="RATES",
        help="Fixed per-layer rates in stage 2 from a rates.json, or from the run "
        "directory of a trainers.meta run: its stage 3 again, or its rates reused.",
    )
    return parser


def learning_rate_suffix(args):
    """`-lr{rate}` when the base learning rate is not the paper's, else ``."""
    if args.learning_rate == DEFAULT_LEARNING_RATE:
        return ""
    return f"-lr{args.learning_rate:g}"


def parse_args(parser, argv):
    """Parses a command line and checks its numbers; on bad input prints one
    line per problem (`PROG: error: …`) and exits 2. Returns the arguments."""
    return _parse(parser, argv, None)[0]


def parse_run(parser, argv, trainer):
    """Parses and checks a `trainers.{trainer}` command line; returns
    `(args, plan)`, the `trainers.validate.Plan` of the run.

    The whole run is checked before any model is built
    (`trainers.validate.check`: numbers, preset, data of every stage, the
    output directory and a rerun's settings) and the directory prepared
    (`--overwrite`). On bad input it prints one line per problem
    (`PROG: error: …`) and exits 2. Called from the real command line (`argv`
    None), failures print one line (the traceback with `--log-level debug`)
    and SIGINT/SIGTERM stop training at a step boundary with a checkpoint
    (exit 130/143).
    """
    return _parse(parser, argv, trainer)


def _parse(parser, argv, trainer):
    cli.one_line_errors(parser)
    cli.forget_created_dirs()
    args = parser.parse_args(argv)
    cli.configure_logging(args.log_level)
    cli.import_tensorflow()
    from trainers import validate

    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
        cli.install_stop(parser.prog, sys.argv[1:])
    plan = None
    if trainer is None:
        problems = validate.check_ranges(parser, args)
    else:
        problems, plan = validate.check(parser, args, trainer)
    if problems:
        cli.fail(parser.prog, problems)
    if trainer is not None:
        given = sys.argv[1:] if argv is None else list(argv)
        plan.command = cli.resume_command(parser.prog, given)
        validate.start(plan, args)
    return args, plan


def finished_results(plan):
    """The results of the `plan`'s run if it has finished (every stage and its
    evaluation), logged in one line; None if there is work to do. A finished
    run is not redone: `--overwrite` runs it again."""
    from trainers import validate

    if not validate.finished(plan):
        return None
    path = plan.run_dir / RESULTS_JSON
    logging.getLogger("keras_metaopt.trainers").info(
        "%s has finished; its results are in %s (add --overwrite to run it again)",
        plan.run_dir,
        path,
    )
    return json.loads(path.read_text(encoding="utf-8"))
