"""Resident memory of the exact meta-gradient, call after call.

    python -m benchmarks.bench_exact_calls                 # 2 layers, 384 wide, 32 x 64
    python -m benchmarks.bench_exact_calls --mode first_order

Builds a random BERT classifier (embeddings frozen), runs `--calls` MetaStep
calls of L = `--meta-interval` inner steps and prints, after each call, the resident
set size and the peak sampled every 50 ms so far. A memory leak shows as RSS
growing from call to call; a crash on a repeated call shows as a traceback
after the first. (`benchmarks.bench_meta_step` gives the time and peak-RSS ratios
against plain fine-tuning at the e5-small shape.)
"""

import os
import threading
import time

from benchmarks.encoder_shapes import (
    frozen_embedding_classifier,
    random_rows,
    repeated_batches,
)
from keras_metaopt import cli


def _rss_mb():
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv=None):
    parser = cli.parser(
        prog="python -m benchmarks.bench_exact_calls",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--meta-interval", type=int, default=15, help="L, inner steps.")
    parser.add_argument("--state-every", type=int, default=1)
    parser.add_argument("--mode", choices=["exact", "first_order"], default="exact")
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from keras_metaopt import MetaOptimizer, MetaStep

    peak = [0.0]

    def sample():
        while True:
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()

    keras.utils.set_random_seed(0)
    model = frozen_embedding_classifier(
        vocabulary_size=args.vocab,
        num_layers=args.layers,
        num_heads=max(1, args.hidden // 32),
        hidden_dim=args.hidden,
        intermediate_dim=4 * args.hidden,
        max_sequence_length=max(128, args.seq),
    )
    rows = random_rows(4 * args.batch, args.seq, args.vocab)
    data = repeated_batches(*rows, args.batch)
    exact = args.mode == "exact"
    optimizer = MetaOptimizer(
        keras.optimizers.Adam(2e-5), meta_gradient="exact" if exact else "first_order"
    )
    step = MetaStep(
        model,
        optimizer,
        args.meta_interval,
        state_every=args.state_every if exact else None,
    )
    trained = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    print(f"{args.mode}: {trained:,} trained parameters; built: {_rss_mb():.0f} MB")
    train, heldout = iter(data), iter(data)
    for call in range(args.calls):
        start = time.time()
        step(train, heldout)["heldout_loss"].numpy()
        time.sleep(0.2)
        print(
            f"call {call}: {time.time() - start:.1f} s, RSS {_rss_mb():.0f} MB, "
            f"peak so far {peak[0]:.0f} MB",
            flush=True,
        )


if __name__ == "__main__":
    main()
