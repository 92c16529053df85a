"""What every trainer shares: flags, the run directory, model, data, stages, evaluation.

Trainers differ only in the optimizer and schedule they assemble; everything
else (one data pipeline, checkpointed stages, TensorBoard, results) is here.
"""

import json
import logging
import os
import pathlib
import shutil
import sys
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf

import keras_metaopt.models  # noqa: F401  (registers E5Tokenizer for presets)
from keras_metaopt import LayerGroups, TrainStep, data
from keras_metaopt.formats import MODEL_DIR, RATES_JSON, RESULTS_JSON, RUN_JSON
from trainers import cli, validate

logger = logging.getLogger("keras_metaopt.trainers")

LABELS = list(data.LABEL_NAMES)
DEFAULT_LEARNING_RATE = 2e-5  # the paper's


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
        "--log-level may differ) and resumes it.",
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
    g.add_argument(
        "--freeze",
        default="embeddings",
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
        "--learning-rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help="Base Adam learning rate (paper: 2e-5). Methods trained with another "
        "rate are named with a suffix, e.g. finetune-lr5e-05.",
    )
    g.add_argument(
        "--en-epochs", type=float, default=2.0, help="Epochs of the English stage."
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


class Run:
    """A run directory: strategy, TensorBoard writer, checkpoints, results.

    Layout: `run.json` (settings), `stage1/` (English model preset),
    `model/` (final classifier preset), `rates.json` (learned rates),
    `checkpoints/<stage>/`, `tb/` (TensorBoard), `results.json`, `results.md`.
    """

    def __init__(self, args, method):
        self.args = args
        self.method = method
        if args.cpu_replicas > 1:  # before TensorFlow initialises its devices
            (cpu,) = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas
            )
        keras.utils.set_random_seed(args.seed)
        tf.config.experimental.enable_op_determinism()
        self.strategy = _strategy(args.strategy)
        logger.info(
            "%s with %d replica(s)",
            type(self.strategy).__name__,
            self.strategy.num_replicas_in_sync,
        )
        self.dir = validate.run_directory(args)
        if not self.dir.exists():  # removed again if this process fails early
            cli.created_dir(self.dir, validate.RUN_ARTIFACTS)
        self.dir.mkdir(parents=True, exist_ok=True)
        # Work left by an earlier process: this run's wall time is partial.
        self.resumed = any(self.dir.glob("checkpoints/*/checkpoint")) or any(
            (self.dir / x).exists() for x in ("stage1", RATES_JSON, MODEL_DIR)
        )
        self.aux = [x for x in args.aux.split(",") if x]
        self.frozen = tuple(x for x in args.freeze.split(",") if x)
        self.writer = tf.summary.create_file_writer(str(self.dir / "tb"))
        self.started = time.time()
        settings = {
            "method": method,
            "preset": args.preset,
            "train_languages": ["en", *self.aux],
            "aux": self.aux,
            "labels": LABELS,
            "sequence_length": args.sequence_length,
            "seed": args.seed,
            "args": vars(args),
        }
        # A validated rerun keeps the run.json its weights were trained with.
        plan = validate.plan_for(args)
        if plan is None or plan.fresh:
            self._write_json(RUN_JSON, settings)

    # ---- model ---------------------------------------------------------
    def load_classifier(self, preset, frozen=None, stage="model"):
        """A keras-hub classifier (logits, 3 classes) with frozen groups set.

        The seed is reset from (--seed, stage) first, so that a new head and
        the dropout streams do not depend on what ran before in the process.
        """
        keras.utils.set_random_seed(_stage_seed(self.args.seed, stage))
        with self.strategy.scope():
            if (pathlib.Path(preset) / "task.json").is_file():
                # A saved classifier: passing num_classes would make keras-hub
                # skip its task weights and start a new, random head.
                classifier = keras_hub.models.TextClassifier.from_preset(str(preset))
                if classifier.num_classes != len(LABELS):
                    raise ValueError(
                        f"{preset}: a classifier with {classifier.num_classes} "
                        f"classes, not {len(LABELS)} ({', '.join(LABELS)})."
                    )
            else:  # an encoder preset: a new head on top
                classifier = keras_hub.models.TextClassifier.from_preset(
                    str(preset), num_classes=len(LABELS), activation=None
                )
            classifier.preprocessor.sequence_length = self.args.sequence_length
            freeze_groups(classifier, self.frozen if frozen is None else frozen)
        return classifier

    def english_model(self):
        """Stage 1: fine-tunes on English (plain Adam) unless done or --init-from.

        Returns the directory of the English model's preset, which every
        method of a seed can share through `--init-from`.
        """
        path = self.stage1_preset()
        if (path / "task.json").is_file():
            return path
        classifier = self.load_classifier(self.args.preset, stage="en")
        pairs = {"en": self.pairs(self.args.en_split, "en")}
        with self.strategy.scope():
            optimizer = keras.optimizers.Adam(self.args.learning_rate)
        steps = self.steps(pairs, self.args.en_epochs, self.args.en_steps)
        logger.info("stage 1: English, %d pairs, %d steps", len(pairs["en"]), steps)
        self.finetune("en", classifier, optimizer, pairs, steps)
        self.save_model(classifier, path)
        return path

    def aux_pairs(self):
        return {lang: self.pairs(self.args.aux_split, lang) for lang in self.aux}

    def stage1_preset(self):
        """Where the English model is (this run's, or --init-from's)."""
        if self.args.init_from:
            path = pathlib.Path(self.args.init_from)
            if (path / "stage1").is_dir():
                path = path / "stage1"
            if not (path / "task.json").is_file():
                raise FileNotFoundError(
                    f"--init-from {path}: no saved classifier (task.json) there."
                )
            return path
        return self.dir / "stage1"

    # ---- data ----------------------------------------------------------
    def pairs(self, split, lang):
        checked = validate.loaded_pairs(self.args, split, lang)
        if checked is not None:
            return checked
        return data.load_pairs(
            self.args.data_dir, split, lang, skip_bad_rows=self.args.skip_bad_rows
        )

    def dataset(
        self, pairs_by_lang, preprocessor, seed, sampling="proportional", skip=0
    ):
        """An endless stream of shuffled batches, languages mixed by `sampling`.

        Each language is shuffled and repeated on its own before mixing, so a
        small language never cuts a large one short. The stream is a pure
        function of `seed`: a resumed stage skips the `skip` batches it had
        consumed (cheap: before tokenization) instead of checkpointing
        iterators, which works under every distribution strategy.
        """
        streams = {
            lang: data.pairs_to_dataset(pairs)
            .shuffle(len(pairs), seed=seed + i, reshuffle_each_iteration=True)
            .repeat()
            for i, (lang, pairs) in enumerate(sorted(pairs_by_lang.items()))
        }
        mixed = data.mix_languages(
            streams,
            sampling=sampling,
            sizes={lang: len(p) for lang, p in pairs_by_lang.items()},
            seed=seed,
            stop_on_empty_dataset=False,
        ).skip(skip * self.args.batch_size)
        ds = data.make_dataset(
            mixed, preprocessor, self.args.batch_size, drop_remainder=True
        )
        return self.strategy.experimental_distribute_dataset(ds)

    def steps(self, pairs_by_lang, epochs, steps):
        if steps is not None:
            return steps
        size = sum(len(p) for p in pairs_by_lang.values())
        return max(1, int(epochs * size // self.args.batch_size))

    # ---- stages --------------------------------------------------------
    def finetune(self, name, classifier, optimizer, pairs_by_lang, steps):
        """Trains `steps` steps, resumable from `checkpoints/<name>`."""
        done = tf.Variable(0, dtype=tf.int64, trainable=False)
        with self.strategy.scope():
            optimizer.build(classifier.trainable_variables)
        checkpoint, manager = self.checkpoints(
            name, classifier, optimizer=optimizer, done=done
        )
        if manager.latest_checkpoint:
            checkpoint.restore(
                manager.latest_checkpoint
            ).assert_existing_objects_matched()
            logger.info("%s: resumed at step %d/%d", name, int(done), steps)
        seed = _stage_seed(self.args.seed, name)
        iterator = iter(
            self.dataset(pairs_by_lang, classifier.preprocessor, seed, skip=int(done))
        )
        chunk = max(1, min(self.args.log_every, self.args.checkpoint_every))
        train = {}
        progress = keras.utils.Progbar(steps, unit_name="step")
        progress.update(int(done))
        while int(done) < steps:
            n = min(chunk, steps - int(done))
            train.setdefault(n, TrainStep(classifier, optimizer, n, self.strategy))
            loss = float(train[n](iterator))
            done.assign_add(n)
            progress.update(int(done), values=[("loss", loss)])
            with self.writer.as_default(step=int(done)):
                tf.summary.scalar(f"{name}/loss", loss)
            if int(done) % self.args.checkpoint_every < n or int(done) == steps:
                manager.save(checkpoint_number=int(done))
            self.stop_point(manager, int(done), f"{name} step {int(done)}/{steps}")
        return classifier

    def stop_point(self, manager, number, where):
        """A step boundary: after SIGINT/SIGTERM, checkpoint `number` and exit."""

        def save():
            latest = manager.latest_checkpoint
            if not (latest and latest.endswith(f"-{number}")):
                manager.save(checkpoint_number=number)

        cli.stop_point(where, save)

    def checkpoints(self, name, model, **objects):
        """A checkpoint of `model` and `objects` under `checkpoints/<name>`.

        The dropout RNG states are added: tf.train.Checkpoint does not reach
        Keras' seed generators, and a resumed run must draw the same masks.
        A training loop follows: from here a SIGINT/SIGTERM waits for its next
        step boundary (`stop_point`).
        """
        cli.set_training(True)
        rng = [
            v.value for v in model.variables if v.path.endswith("seed_generator_state")
        ]
        checkpoint = tf.train.Checkpoint(model=model, dropout_rng=rng, **objects)
        manager = tf.train.CheckpointManager(
            checkpoint, str(self.dir / "checkpoints" / name), max_to_keep=2
        )
        return checkpoint, manager

    # ---- evaluation ----------------------------------------------------
    def evaluate(self, classifier):
        """Accuracy per language on --eval-split; writes results.json/.md."""
        cli.set_training(False)
        args = self.args
        languages = (
            args.eval_languages.split(",")
            if args.eval_languages
            else data.list_languages(args.data_dir, args.eval_split)
        )
        results = evaluate(
            classifier,
            {lang: self.pairs(args.eval_split, lang) for lang in languages},
            batch_size=max(args.batch_size, 64),
        )
        with self.writer.as_default(step=0):
            for lang, r in results.items():
                tf.summary.scalar(f"accuracy/{lang}", r["accuracy"])
        payload = {
            "method": self.method,
            "seed": args.seed,
            "preset": args.preset,
            "aux": self.aux,
            "eval_split": args.eval_split,
            "accuracy": {lang: r["accuracy"] for lang, r in results.items()},
            "targets": [x for x in languages if x not in ("en", *self.aux)],
            "correct": {lang: r["correct"] for lang, r in results.items()},
            "wall_time_s": round(time.time() - self.started, 1),
            "resumed": self.resumed,  # wall_time_s covers only this process
        }
        payload["avg_target"] = _mean(payload["accuracy"], payload["targets"])
        payload["avg_all"] = _mean(payload["accuracy"], languages)
        self._write_json(RESULTS_JSON, payload)
        (self.dir / "results.md").write_text(results_table([payload]), encoding="utf-8")
        logger.info(
            "%s: target avg %.2f, all avg %.2f",
            self.method,
            100 * payload["avg_target"],
            100 * payload["avg_all"],
        )
        return payload

    def save_model(self, classifier, path):
        """Saves a keras-hub preset at `path`, replacing it only once written."""
        cli.set_training(False)
        path = pathlib.Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        classifier.save_to_preset(str(tmp))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    def write_json(self, name, payload):
        """Writes `payload` as `name` in the run directory, atomically."""
        self._write_json(name, payload)

    def _write_json(self, name, payload):
        tmp = self.dir / f"{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.dir / name)


def learning_rate_suffix(args):
    """`-lr{rate}` when the base learning rate is not the paper's, else ``."""
    if args.learning_rate == DEFAULT_LEARNING_RATE:
        return ""
    return f"-lr{args.learning_rate:g}"


def freeze_groups(classifier, frozen):
    """Sets `trainable=False` on every layer whose weights are all in `frozen`."""
    groups = LayerGroups(frozen=frozen)
    for layer in classifier.backbone.layers + [classifier]:
        paths = [v.path for v in layer.weights]
        if layer is classifier or not paths:
            continue
        if all(groups.group_of_path(p) in groups.frozen for p in paths):
            layer.trainable = False
    return classifier


def evaluate(classifier, pairs_by_lang, batch_size=64):
    """`{lang: {"accuracy", "correct": [0/1 per example, in file order]}}`.

    Examples are tokenized once, sorted by real length (longest first) and
    batched so that each batch is trimmed to its own longest sequence: on XNLI
    at 64 tokens this feeds the encoder ~30% fewer tokens than file-order
    batches. Predictions are put back in file order. Padding is masked, so the
    order changes nothing but float round-off.
    """
    predict = tf.function(
        lambda x: tf.argmax(
            classifier(x, training=False), axis=-1, output_type=tf.int32
        ),
        reduce_retracing=True,
    )
    results = {}
    for lang, pairs in pairs_by_lang.items():
        features = _tokenize_all(pairs, classifier.preprocessor, batch_size)
        lengths = features["padding_mask"].astype(np.int64).sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        predictions = np.empty(len(order), np.int32)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            length = int(lengths[index].max())
            batch = {
                key: value[index, :length] if value.ndim >= 2 else value[index]
                for key, value in features.items()
            }
            predictions[index] = predict(batch).numpy()
        correct = (predictions == np.asarray(pairs.labels)).astype(int)
        results[lang] = {"accuracy": float(correct.mean()), "correct": correct.tolist()}
        logger.info("eval %s: %.2f%% of %d", lang, 100 * correct.mean(), len(correct))
    return results


def _tokenize_all(pairs, preprocessor, batch_size):
    """Every example's padded features as numpy arrays, in file order."""
    ds = data.make_dataset(pairs, preprocessor, batch_size, dynamic_padding=False)
    chunks = [x for x, _ in ds.as_numpy_iterator()]
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}


def results_table(runs, baseline=None, p_values=None):
    """A Table-1-style markdown table: one row per method, mean ± std over seeds."""
    languages = list(runs[0]["accuracy"])
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    header = "| method | seeds | " + " | ".join(languages) + " | avg target | avg all |"
    if p_values:
        header += f" p vs {baseline} |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for method, group in by_method.items():
        cells = [method, str(len(group))]
        for lang in languages:
            cells.append(_fmt([r["accuracy"][lang] for r in group]))
        cells.append(_fmt([r["avg_target"] for r in group]))
        cells.append(_fmt([r["avg_all"] for r in group]))
        if p_values:
            p = p_values.get(method)
            cells.append("" if p is None else f"{p:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(values):
    values = 100 * np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def _mean(accuracy, languages):
    return (
        float(np.mean([accuracy[x] for x in languages])) if languages else float("nan")
    )


def _stage_seed(seed, name):
    return int(np.random.SeedSequence([seed, *name.encode()]).generate_state(1)[0])


def _strategy(name):
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPUs (one unless split).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def parse_args(parser, argv, trainer=None):
    """Parses and checks a command line; on bad input prints one line per
    problem (`PROG: error: …`) and exits 2.

    `trainer` ("meta", "finetune") checks the whole run before any model is
    built (`trainers.validate.check`: numbers, preset, data of every stage,
    the output directory and a rerun's settings) and prepares the directory
    (`--overwrite`); without it only the numbers are checked. Called from the
    real command line (`argv` None), failures print one line (the traceback
    with `--log-level debug`) and SIGINT/SIGTERM stop training at a step
    boundary with a checkpoint (exit 130/143).
    """
    cli.one_line_errors(parser)
    cli.forget_created_dirs()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(args.log_level)
    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
        cli.install_stop(parser.prog, sys.argv[1:])
    if trainer is None:
        problems = validate.check_ranges(parser, args)
    else:
        problems, plan = validate.check(parser, args, trainer)
    if problems:
        cli.fail(parser.prog, problems)
    if trainer is not None:
        validate.start(plan, args)
    return args
