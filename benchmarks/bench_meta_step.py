"""Benchmark: plain Adam step vs. an inner step of meta-training (L steps + meta).

Each method runs in its own process so that its peak RSS is its own. The
encoder has the shape of multilingual-e5-small (12 layers, hidden 384, 12
heads, FF 1536, vocab 250,037) with random weights and frozen embeddings.

With `--meta-gradient exact` a third process times one exact meta update
(the window's L steps, then the backward sweep) against one first-order window
and reports its peak RSS against plain fine-tuning.

Usage:
    python -m benchmarks.bench_meta_step                 # e5-small shape, 32 x 128
    python -m benchmarks.bench_meta_step --tiny --meta-steps 2   # seconds, smoke run
    python -m benchmarks.bench_meta_step --meta-gradient exact --state-every 4
    python -m benchmarks.bench_meta_step --meta-gradient exact --recompute-layers
    python -m benchmarks.bench_meta_step --meta-gradient exact --offload-states /tmp/states
    python -m benchmarks.bench_meta_step --meta-gradient exact --hvp-micro-batches 4
    python -m benchmarks.bench_meta_step --meta-gradient exact --num-layers 2 --seq 64
    python -m benchmarks.bench_meta_step --meta-gradient exact --tiny --breakdown
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from benchmarks.encoder_shapes import (
    E5_SMALL,
    frozen_embedding_classifier,
    random_rows,
    repeated_batches,
)
from keras_metaopt import cli

SHAPES = {
    "e5-small": E5_SMALL,
    "tiny": dict(
        vocabulary_size=1000,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=128,
    ),
}


def _worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_metaopt import MetaOptimizer, MetaStep

    keras.utils.set_random_seed(0)
    shape = dict(SHAPES["tiny" if args.tiny else "e5-small"])
    if args.num_layers:
        shape["num_layers"] = args.num_layers
    model = frozen_embedding_classifier(**shape)

    rows = random_rows(4 * args.batch, args.seq, shape["vocabulary_size"])
    data = repeated_batches(*rows, args.batch)
    L = args.meta_interval
    breakdown = None

    if args.worker == "plain":
        optimizer = keras.optimizers.Adam(2e-5)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def train_step(batch):
            x, y = batch
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        iterator = iter(data)
        for _ in range(args.warmup_steps):
            train_step(next(iterator)).numpy()
        steps = args.meta_steps * L
        start = time.perf_counter()
        for _ in range(steps):
            train_step(next(iterator))
        float(train_step(next(iterator)))
        elapsed = (time.perf_counter() - start) / (steps + 1)
    else:
        exact = args.worker == "exact"
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(2e-5),
            meta_gradient="exact" if exact else "first_order",
        )
        step = MetaStep(
            model,
            optimizer,
            meta_interval=L,
            state_every=args.state_every if exact else None,
            recompute_layers=exact and args.recompute_layers,
            offload_dir=args.offload_states if exact else None,
            hvp_micro_batches=args.hvp_micro_batches if exact else 1,
        )
        train_it, heldout_it = iter(data), iter(data)
        step(train_it, heldout_it)["heldout_loss"].numpy()  # trace + warm up
        breakdown = _time_the_parts(step) if exact and args.breakdown else None
        start = time.perf_counter()
        for _ in range(args.meta_steps):
            result = step(train_it, heldout_it)
        float(result["heldout_loss"])
        elapsed = (time.perf_counter() - start) / (args.meta_steps * L)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    print(
        json.dumps(
            {
                "seconds_per_step": elapsed,
                "peak_rss_mb": peak_mb,
                "trainable_params": trainable,
                "breakdown": breakdown,
            }
        )
    )


def _time_the_parts(step):
    """{part: [seconds, calls]} of the exact windows run from now on: each
    compiled single step of the window (`ExactMetaGradient._compiled_steps`)
    and the state files' put/pop (which wait for I/O the file thread has not
    done yet). Compiled calls return when done (eager execution is synchronous)."""
    from keras_metaopt.state_file import StateFile

    parts = {}

    def timed(name, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            seconds, calls = parts.get(name, (0.0, 0))
            parts[name] = [seconds + time.perf_counter() - start, calls + 1]
            return out

        return run

    compiled = step._window._compiled_steps()
    for name in list(compiled):
        compiled[name] = timed(name, compiled[name])
    for name in ("put", "pop"):
        setattr(StateFile, name, timed(f"file {name}", getattr(StateFile, name)))
    return parts


def main(argv=None):
    parser = cli.parser(
        prog="python -m benchmarks.bench_meta_step",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--tiny", action="store_true", help="Tiny encoder (smoke run).")
    parser.add_argument(
        "--num-layers",
        type=int,
        help="Transformer layers instead of the shape's own (e5-small: 12).",
    )
    parser.add_argument("--batch", type=int, default=32, help="Batch size.")
    parser.add_argument("--seq", type=int, default=128, help="Tokens per example.")
    parser.add_argument("--meta-interval", type=int, default=15, help="L (paper: 15).")
    parser.add_argument(
        "--meta-steps",
        type=int,
        default=2,
        help="Timed meta steps; plain Adam times the same number of steps.",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=3, help="Untimed plain Adam steps."
    )
    parser.add_argument(
        "--meta-gradient",
        choices=["first_order", "exact"],
        default="first_order",
        help="exact: also time the exact meta-gradient's window.",
    )
    parser.add_argument(
        "--state-every",
        type=int,
        default=1,
        help="exact: keep every k-th inner state (memory ~ L/k + k states).",
    )
    parser.add_argument(
        "--recompute-layers",
        action="store_true",
        help="exact: recompute each transformer layer in the Hessian-vector "
        "products (keras_metaopt.layer_recompute).",
    )
    parser.add_argument(
        "--offload-states",
        metavar="DIR",
        help="exact: keep the stored inner states in files under DIR instead of "
        "memory (keras_metaopt.state_file; memory ~ k states).",
    )
    parser.add_argument(
        "--hvp-micro-batches",
        type=int,
        default=1,
        help="exact: each Hessian-vector product over this many micro-batches "
        "(keras_metaopt.micro_batch).",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="exact: also print where the window's time goes (each compiled "
        "step of the window, the state files' put/pop).",
    )
    parser.add_argument(
        "--worker", choices=["plain", "meta", "exact"], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    results = {}
    workers = ("plain", "meta") + (("exact",) if args.meta_gradient == "exact" else ())
    for worker in workers:
        print(f"running {worker} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_meta_step", "--worker", worker]
            + (argv if argv is not None else sys.argv[1:]),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[worker] = json.loads(out.strip().splitlines()[-1])
    plain, meta = results["plain"], results["meta"]
    shape = "tiny" if args.tiny else "e5-small"
    if args.num_layers:
        shape += f" with {args.num_layers} layers"
    print(
        f"encoder {shape}, batch {args.batch} x {args.seq} tokens, "
        f"L = {args.meta_interval}, "
        f"trainable params {plain['trainable_params']:,}"
    )
    print(f"{'':28}{'s/step':>10}{'peak RSS MB':>14}")
    print(
        f"{'plain Adam':28}{plain['seconds_per_step']:>10.3f}{plain['peak_rss_mb']:>14.0f}"
    )
    print(
        f"{'meta-training inner step':28}"
        f"{meta['seconds_per_step']:>10.3f}{meta['peak_rss_mb']:>14.0f}"
    )
    ratio = meta["seconds_per_step"] / plain["seconds_per_step"]
    rss = meta["peak_rss_mb"] / plain["peak_rss_mb"]
    bound = 1 + 1 / args.meta_interval
    print(
        f"time ratio {ratio:.3f} (target <= 1.10; method's bound 1 + 1/L = {bound:.3f})"
    )
    print(f"peak RSS ratio {rss:.3f} (target <= 1.25)")
    if "exact" in results:
        exact = results["exact"]
        L = args.meta_interval
        label = f"exact meta update (k = {args.state_every})"
        if args.recompute_layers:
            label = f"exact (k = {args.state_every}), recomputed"
        if args.offload_states:
            label += ", in files"
        if args.hvp_micro_batches > 1:
            label += f", {args.hvp_micro_batches} micro"
        print(
            f"{label:28}"
            f"{exact['seconds_per_step'] * L:>10.3f}{exact['peak_rss_mb']:>14.0f}"
            "   (s per window)"
        )
        print(
            f"exact window / first-order window time "
            f"{exact['seconds_per_step'] / meta['seconds_per_step']:.3f} "
            "(target <= 3.0)"
        )
        print(
            f"exact peak RSS / plain fine-tuning "
            f"{exact['peak_rss_mb'] / plain['peak_rss_mb']:.3f} (target <= 1.6)"
        )
        if exact["breakdown"]:
            windows = args.meta_steps
            print(f"exact window's parts (s per window, mean of {windows}):")
            for name, (seconds, calls) in exact["breakdown"].items():
                print(
                    f"  {name:26}{seconds / windows:>10.3f}"
                    f"   ({calls // windows} calls, {seconds / calls:.3f} s each)"
                )


if __name__ == "__main__":
    main()
