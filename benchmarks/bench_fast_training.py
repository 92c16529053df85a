"""Benchmark: training steps and predictions under {float32, mixed_bfloat16} × {fixed padding, grouped}.

Real XNLI batches: the English training stream (`train_mt.en`) for the plain
and the meta inner steps, the auxiliary dev rows (`dev[:1245]` of el and ur,
mixed) for the held-out step, tokenized by the preset's own preprocessor and
batched by the trainers' pipeline (`keras_metaopt.data.make_dataset`):

- fixed: every batch padded to `--sequence-length`;
- grouped: `--group-by-length` as the trainers do it (mega-batches of 50
  batches sorted by length, each batch padded to its longest pair rounded up
  to a multiple of 8).

For each of the four settings, one process (so that Keras's dtype policy and
the peak RSS are its own) times, after `--warmup` steps, `--steps` steps of
each kind on every `--stride`-th batch (the batches between are drawn but not
trained on: 12 timed steps at stride 4 span 48 of the first mega-batch's 50
batches, so that the timed grouped batches have nearly the lengths of a whole
mega-batch; 12 consecutive batches are a sample of 12 of its 50, whose mean
length varies by several tokens): a plain Adam step (`TrainStep`), a
first-order meta inner step (`TrainStep` with a `MetaOptimizer`: the step
scaled by λ and summed for the meta-gradient), and a held-out step (forward,
backward and the first-order meta-gradient, as `MetaStep` does after its L
inner steps), and a prediction (forward only, `training=False`, as
evaluation and serving run it, on the held-out stream). It reports seconds per step (total time / steps), real tokens
per second, and for each batching the padding waste (padded tokens / real
tokens) over the timed batches. The processes run one after the other, in one
sitting, so compare ratios within one run. On a machine with other load, a
setting's process can be slowed by what happens to run beside it (a 1.9× slower
float32 plain step was seen once): `--repeats N` runs every setting N times in
rounds (all settings, then all again) and reports, per setting and kind, the
median seconds per step, with every repeat's figure in the JSON.

The classifier is loaded as every entry point loads it
(`keras_metaopt.models.load_classifier`: in bfloat16 models the exact GELU,
the residual stream and the attention softmax are computed in float32, and
the attention projections as one MatMul each).
Options add mixed_bfloat16 processes computing as before those changes, to
measure what they are worth in the same sitting: `--einsum-too` with the
attention projections as einsums (from 17a5b08 until they became one MatMul
each; `mixed_bfloat16-einsum`), `--bf16-residual-too` with the residual
stream and the softmax in bfloat16 too (commits d303fb6 to 17a5b08;
`mixed_bfloat16-bf16-residual`), `--bf16-gelu-too` with Keras's policy alone,
the GELU in bfloat16 too (before d303fb6; `mixed_bfloat16-bf16-gelu`).

Usage:
    python -m tools.import_e5_small --out presets/multilingual_e5_small
    python -m benchmarks.bench_fast_training --preset presets/multilingual_e5_small
    python -m benchmarks.bench_fast_training --preset presets/tiny --steps 2  # smoke
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from keras_metaopt import cli

POLICIES = ("float32", "mixed_bfloat16")
BATCHINGS = ("fixed", "grouped")
KINDS = ("plain", "meta_inner", "heldout", "predict")
# How a worker loads the classifier: as every entry point does now, or as
# before a change to bf16 numerics; the suffix of its results' name.
NUMERICS = {
    "now": "",
    "einsum": "-einsum",
    "bf16-residual": "-bf16-residual",
    "keras": "-bf16-gelu",
}


def _stream(args, pairs_by_lang, preprocessor, grouped, seed):
    from keras_metaopt import data
    from trainers.run import LENGTH_MULTIPLE

    streams = {
        lang: data.pairs_to_dataset(p).shuffle(len(p), seed=seed + i).repeat()
        for i, (lang, p) in enumerate(sorted(pairs_by_lang.items()))
    }
    mixed = data.mix_languages(
        streams, seed=seed, sizes={k: len(v) for k, v in pairs_by_lang.items()},
        sampling="proportional", stop_on_empty_dataset=False,
    )  # fmt: skip
    if grouped:
        return data.make_dataset(
            mixed, preprocessor, args.batch_size, drop_remainder=True,
            length_grouping={"seed": seed}, pad_to_multiple_of=LENGTH_MULTIPLE,
        )  # fmt: skip
    return data.make_dataset(
        mixed, preprocessor, args.batch_size, drop_remainder=True,
        dynamic_padding=False,
    )  # fmt: skip


def _worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import keras_hub
    import tensorflow as tf

    from keras_metaopt import LayerGroups, MetaOptimizer, TrainStep, data
    from keras_metaopt.models import (
        compute_gelu_in_float32,
        compute_residual_in_float32,
        load_classifier,
    )
    from trainers.process import set_precision
    from trainers.run import freeze_groups

    def load_classifier_as_in_d303fb6(preset, **kwargs):
        classifier = keras_hub.models.TextClassifier.from_preset(preset, **kwargs)
        compute_gelu_in_float32(classifier)
        return classifier

    def load_classifier_as_in_17a5b08(preset, **kwargs):
        classifier = load_classifier_as_in_d303fb6(preset, **kwargs)
        compute_residual_in_float32(classifier)
        return classifier

    set_precision(args.policy)
    keras.utils.set_random_seed(0)
    # Computing as before load_classifier's changes only when asked (what
    # they are worth): --numerics einsum, bf16-residual or keras.
    from_preset = {
        "now": load_classifier,
        "einsum": load_classifier_as_in_17a5b08,
        "bf16-residual": load_classifier_as_in_d303fb6,
        "keras": keras_hub.models.TextClassifier.from_preset,
    }[args.numerics]
    classifier = from_preset(
        args.preset, num_classes=3, activation=None, dtype=args.policy
    )
    classifier.preprocessor.sequence_length = args.sequence_length
    freeze_groups(classifier, ("embeddings",))
    load = lambda split, lang: data.load_pairs(args.data_dir, split, lang)  # noqa: E731
    grouped = args.batching == "grouped"
    en = {"en": load("train_mt", "en")}
    aux = {lang: load("dev[:1245]", lang) for lang in ("el", "ur")}

    def stream(pairs, seed):  # the same batches each time it is called
        return _stream(args, pairs, classifier.preprocessor, grouped, seed)

    plain = TrainStep(classifier, keras.optimizers.Adam(2e-5))
    meta_optimizer = MetaOptimizer(
        keras.optimizers.Adam(2e-5), LayerGroups(frozen=("embeddings",))
    )
    inner = TrainStep(classifier, meta_optimizer)
    meta_optimizer.build(classifier.trainable_variables)

    @tf.function
    def heldout_step(iterator):  # MetaStep's held-out part (without φ's update)
        variables = classifier.trainable_variables
        with tf.GradientTape() as tape:
            loss = inner.loss(next(iterator), training=False)
        grads = tape.gradient(loss, variables)
        return loss, meta_optimizer.meta_gradient(grads, variables)[0]

    @tf.function
    def predict(iterator):  # evaluation's and serving's forward pass
        return tf.reduce_sum(classifier(next(iterator)[0], training=False))

    # Each step takes its batch from a tf.data iterator inside the compiled
    # function, as the trainers do (no retracing per sequence length); a twin
    # iterator over the same batches gives their padding.
    kinds = {
        "plain": (en, 0, plain),
        "meta_inner": (en, 0, inner),
        "heldout": (aux, 1, heldout_step),
        "predict": (aux, 1, predict),
    }
    result = {}
    for kind, (pairs, seed, run) in kinds.items():
        iterator, twin = iter(stream(pairs, seed)), iter(stream(pairs, seed))
        for _ in range(args.warmup):
            float(tf.nest.flatten(run(iterator))[0])
            next(twin)
        seconds, real, padded = 0.0, 0, 0
        for _ in range(args.steps):
            for _ in range(args.stride - 1):  # drawn, not trained on
                next(iterator), next(twin)
            mask = next(twin)[0]["padding_mask"].numpy()
            start = time.perf_counter()
            float(tf.nest.flatten(run(iterator))[0])
            seconds += time.perf_counter() - start
            real += int(mask.sum())
            padded += mask.size
        result[kind] = {
            "seconds_per_step": seconds / args.steps,
            "real_tokens_per_second": real / seconds,
            "padded_tokens_per_real_token": padded / real,
            "mean_padded_length": padded / (args.steps * args.batch_size),
        }
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["dtypes"] = sorted(
        {str(v.dtype) for v in classifier.weights + meta_optimizer.variables}
    )
    print(json.dumps(result))


def combine(repeats):
    """One setting's results from its repeats: per kind, the median seconds
    per step (the mean of the middle two for an even count) and the real
    tokens per second at that median; the padding figures, which are the same
    in every repeat (the same batches), as they are; every repeat's seconds
    per step under "seconds_per_step_repeats"; the largest peak RSS."""
    result = {}
    for kind in KINDS:
        seconds = sorted(r[kind]["seconds_per_step"] for r in repeats)
        middle = len(seconds) // 2
        median = (seconds[middle] + seconds[~middle]) / 2
        first = repeats[0][kind]
        real_per_step = first["real_tokens_per_second"] * first["seconds_per_step"]
        result[kind] = {
            **first,
            "seconds_per_step": median,
            "real_tokens_per_second": real_per_step / median,
            "seconds_per_step_repeats": [r[kind]["seconds_per_step"] for r in repeats],
        }
    result["peak_rss_mb"] = max(r["peak_rss_mb"] for r in repeats)
    result["dtypes"] = repeats[0]["dtypes"]
    return result


def main(argv=None):
    parser = cli.parser(
        prog="python -m benchmarks.bench_fast_training",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--preset", required=True, help="Encoder preset directory.")
    parser.add_argument(
        "--data-dir", default="../shared/data/xnli", help="xnli-proxy TSV directory."
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per kind.")
    parser.add_argument("--steps", type=int, default=12, help="Timed steps per kind.")
    parser.add_argument(
        "--stride",
        type=int,
        default=4,
        help="Time every stride-th batch (1: consecutive batches, as in the "
        "figures of commit 34c9e23).",
    )
    parser.add_argument(
        "--einsum-too",
        action="store_true",
        help="Also time mixed_bfloat16 with the attention projections as "
        "einsums (as from commit 17a5b08 until they became one MatMul each).",
    )
    parser.add_argument(
        "--bf16-residual-too",
        action="store_true",
        help="Also time mixed_bfloat16 with the residual stream and the "
        "attention softmax in bfloat16 (as from commit d303fb6 to 17a5b08).",
    )
    parser.add_argument(
        "--bf16-gelu-too",
        action="store_true",
        help="Also time Keras's mixed_bfloat16 alone: the GELU, the residual "
        "stream and the softmax in bfloat16 (as before commit d303fb6).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Run every setting this many times, in rounds, and report the "
        "median (odd numbers give a measured repeat).",
    )
    parser.add_argument("--output", help="Also write the results as JSON here.")
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--batching", choices=BATCHINGS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--numerics", choices=tuple(NUMERICS), default="now", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if min(args.batch_size, args.sequence_length, args.steps, args.stride) < 1:
        parser.error(
            "--batch-size, --sequence-length, --steps and --stride must be >= 1"
        )
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.policy:
        return _worker(args)

    settings = [(p, b, "now") for p in POLICIES for b in BATCHINGS]
    for numerics, asked in (
        ("einsum", args.einsum_too),
        ("bf16-residual", args.bf16_residual_too),
        ("keras", args.bf16_gelu_too),
    ):
        settings += [("mixed_bfloat16", b, numerics) for b in BATCHINGS if asked]
    runs = {}  # name: [one worker's results per repeat]
    for repeat in range(args.repeats):
        for policy, batching, numerics in settings:
            command = [sys.executable, "-m", "benchmarks.bench_fast_training"]
            command += ["--preset", args.preset, "--data-dir", args.data_dir]
            for flag in ("batch_size", "sequence_length", "warmup", "steps", "stride"):
                command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            command += ["--policy", policy, "--batching", batching]
            command += ["--numerics", numerics]
            name = f"{policy}{NUMERICS[numerics]}/{batching}"
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"bench_fast_training: {name} failed:\n" + done.stderr[-3000:])
            runs.setdefault(name, []).append(json.loads(done.stdout.splitlines()[-1]))
            print(
                f"{name}: done (repeat {repeat + 1} of {args.repeats})",
                file=sys.stderr,
                flush=True,
            )
    results = {name: combine(repeats) for name, repeats in runs.items()}

    base = {k: results["float32/fixed"][k]["seconds_per_step"] for k in KINDS}
    print(
        "| policy | batching | kind | s/step | real tokens/s | speed-up "
        "| padded/real | mean padded length |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        policy, batching = name.split("/")
        for kind in KINDS:
            r = result[kind]
            print(
                f"| {policy} | {batching} | {kind} | {r['seconds_per_step']:.3f} "
                f"| {r['real_tokens_per_second']:.0f} "
                f"| {base[kind] / r['seconds_per_step']:.2f} "
                f"| {r['padded_tokens_per_real_token']:.2f} "
                f"| {r['mean_padded_length']:.1f} |"
            )
    for name, result in results.items():
        rss, dtypes = result["peak_rss_mb"], result["dtypes"]
        print(f"{name}: peak RSS {rss:.0f} MB, variable dtypes {dtypes}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
