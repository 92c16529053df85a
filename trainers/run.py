"""A run directory, and what a trainer does in it: model, data, stages, results.

Layout: `run.json` (settings), `stage1/` (English model preset), `model/`
(final classifier preset), `rates.json` (learned rates), `checkpoints/<stage>/`,
`tb/` (TensorBoard), `results.json`, `results.md`. The names of the files that
serving and the tools read are owned by `keras_metaopt.formats`.
"""

import json
import logging
import os
import pathlib
import shutil
import time

import keras
import tensorflow as tf

from keras_metaopt import LayerGroups, cli, data
from keras_metaopt.formats import (
    MODEL_DIR,
    RATES_JSON,
    RESULTS_JSON,
    RESULTS_MD,
    STAGE1_DIR,
    TASK_JSON,
    TB_DIR,
    holds_classifier,
    stage1_preset,
    write_json,
)
from keras_metaopt.models import load_classifier
from keras_metaopt.run_record import make_run_record, write_run_record
from trainers.evaluation import evaluate
from trainers.output_checks import RUN_ARTIFACTS, run_directory
from trainers.reporting import mean_accuracy, results_table, run_settings
from trainers.stage_loop import seed_of_stage, train_stage

logger = logging.getLogger("keras_metaopt.trainers")

LABELS = list(data.LABEL_NAMES)
# --group-by-length pads each batch to a multiple of this (bounds the shapes).
LENGTH_MULTIPLE = 8


class Run:
    """The run directory of one trainer invocation, under `strategy`.

    `strategy` comes from `trainers.process.setup_process(args)`, which must
    have been called first (it sets the seeds and devices this class relies on).
    `plan`: the `trainers.validate.Plan` that checked `args`
    (`trainers.flags.parse_run`), whose data is used instead of reading it
    again; None (the probes) reads the data here and writes a new run.json.
    """

    def __init__(self, args, method, strategy, plan=None):
        self.args = args
        self.method = method
        self.strategy = strategy
        self.plan = plan
        self.dir = run_directory(args)
        if not self.dir.exists():  # removed again if this process fails early
            cli.created_dir(self.dir, RUN_ARTIFACTS)
        self.dir.mkdir(parents=True, exist_ok=True)
        # Work left by an earlier process: this run's wall time is partial.
        self.resumed = any(self.dir.glob("checkpoints/*/checkpoint")) or any(
            (self.dir / x).exists() for x in (STAGE1_DIR, RATES_JSON, MODEL_DIR)
        )
        self.aux = [x for x in args.aux.split(",") if x]
        self.frozen = tuple(x for x in args.freeze.split(",") if x)
        self.writer = tf.summary.create_file_writer(str(self.dir / TB_DIR))
        self.started = time.time()
        # A validated rerun keeps the run.json its weights were trained with.
        if plan is None or plan.fresh:
            record = make_run_record(
                method=method,
                preset=args.preset,
                aux=self.aux,
                sequence_length=args.sequence_length,
                seed=args.seed,
                args=vars(args),
                command=plan.command if plan is not None else None,
            )
            write_run_record(self.dir, record)

    # ---- model ---------------------------------------------------------
    def load_classifier(self, preset, frozen=None, stage="model"):
        """A keras-hub classifier (logits, 3 classes) with frozen groups set.

        The seed is reset from (--seed, stage) first, so that a new head and
        the dropout streams do not depend on what ran before in the process.
        """
        keras.utils.set_random_seed(seed_of_stage(self.args, stage))
        with self.strategy.scope():
            if holds_classifier(preset):
                # A saved classifier: passing num_classes would make keras-hub
                # skip its task weights and start a new, random head.
                classifier = load_classifier(preset, dtype=self.args.precision)
                if classifier.num_classes != len(LABELS):
                    raise ValueError(
                        f"{preset}: a classifier with {classifier.num_classes} "
                        f"classes, not {len(LABELS)} ({', '.join(LABELS)})."
                    )
            else:  # an encoder preset: a new head on top
                classifier = load_classifier(
                    preset,
                    num_classes=len(LABELS),
                    activation=None,
                    dtype=self.args.precision,
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
        if holds_classifier(path):
            return path
        classifier = self.load_classifier(self.args.preset, stage="en")
        pairs = {"en": self.pairs(self.args.en_split, "en")}
        with self.strategy.scope():
            optimizer = keras.optimizers.Adam(self.args.learning_rate)
        steps = self.steps(pairs, self.args.en_epochs, self.args.en_steps)
        logger.info("stage 1: English, %d pairs, %d steps", len(pairs["en"]), steps)
        train_stage(self, "en", classifier, optimizer, pairs, steps)
        self.save_model(classifier, path)
        return path

    def aux_pairs(self):
        return {lang: self.pairs(self.args.aux_split, lang) for lang in self.aux}

    def stage1_preset(self):
        """Where the English model is (this run's, or --init-from's)."""
        if self.args.init_from:
            path = stage1_preset(self.args.init_from)
            if not holds_classifier(path):
                raise FileNotFoundError(
                    f"--init-from {path}: no saved classifier ({TASK_JSON}) there."
                )
            return path
        return self.dir / STAGE1_DIR

    # ---- data ----------------------------------------------------------
    def pairs(self, split, lang):
        checked = self.plan.pairs.get((split, lang)) if self.plan else None
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
        )
        if self.args.group_by_length:  # skips whole mega-batches, then batches
            ds = data.make_dataset(
                mixed,
                preprocessor,
                self.args.batch_size,
                drop_remainder=True,
                length_grouping={"seed": seed, "skip": skip},
                pad_to_multiple_of=LENGTH_MULTIPLE,
            )
        else:
            ds = data.make_dataset(
                mixed.skip(skip * self.args.batch_size),
                preprocessor,
                self.args.batch_size,
                drop_remainder=True,
            )
        return self.strategy.experimental_distribute_dataset(ds)

    def steps(self, pairs_by_lang, epochs, steps):
        if steps is not None:
            return steps
        size = sum(len(p) for p in pairs_by_lang.values())
        return max(1, int(epochs * size // self.args.batch_size))

    # ---- results -------------------------------------------------------
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
            "settings": run_settings(vars(args)),  # what seeds pooled must share
        }
        payload["avg_target"] = mean_accuracy(payload["accuracy"], payload["targets"])
        payload["avg_all"] = mean_accuracy(payload["accuracy"], languages)
        self.write_json(RESULTS_JSON, payload)
        (self.dir / RESULTS_MD).write_text(results_table([payload]), encoding="utf-8")
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
        _record_variable_dtype(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    def write_json(self, name, payload):
        """Writes `payload` as `name` in the run directory, atomically."""
        write_json(self.dir / name, payload)


def _record_variable_dtype(preset_dir):
    """Records a mixed dtype policy in a saved preset as its variable dtype.

    Under --precision mixed_bfloat16 keras-hub writes "mixed_bfloat16" as the
    backbone's dtype, and keras-hub 0.32 cannot load such a preset without an
    explicit `dtype=` ("Invalid dtype: mixed_bfloat16"). The weights are
    float32 either way, so the preset says float32 and loads anywhere like
    one; the precision a run trained with is in its run.json, and every loader
    here takes its own --precision.
    """

    def fix(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                name = node.get("config", {}).get("name", "")
                if name.startswith("mixed_"):
                    node["config"]["name"] = keras.DTypePolicy(name).variable_dtype
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    for path in pathlib.Path(preset_dir).glob("*.json"):
        config = json.loads(path.read_text(encoding="utf-8"))
        fix(config)
        path.write_text(json.dumps(config, indent=4), encoding="utf-8")


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
