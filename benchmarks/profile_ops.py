"""Benchmark: where a forward pass or a training step spends its time, per op type.

Profiles (`tf.profiler`) the classifier's forward pass (`--pass forward`,
`training=False`, as evaluation and serving run it) or its gradient
(`--pass gradient`: forward with `training=True`, the cross-entropy loss and
its gradient for the trainable variables, the embeddings frozen as the
trainers freeze them; no optimizer) on one random batch of `--batch-size` × `--length` tokens, `--calls` calls after two warm-up calls, for three
settings of the same weights: float32; mixed_bfloat16 as every entry point
loads it (`keras_metaopt.models.load_classifier`: the exact GELU, the
residual stream and the softmax in float32, the attention projections as one
MatMul each); and Keras's mixed_bfloat16 alone (plain keras-hub: everything
in bfloat16, the GELU too).
It prints, per setting, the wall time per call and the op types' time per
call summed over TensorFlow's threads (so they may add up to more than the
wall time), largest first. This is how the bfloat16 `Erfc` was found to take
a third of the bfloat16 forward pass (BENCHMARKS.md, "Where bf16 inference
lost its time").

Usage:
    python -m benchmarks.profile_ops --preset presets/multilingual_e5_small
    python -m benchmarks.profile_ops --preset presets/multilingual_e5_small \
        --pass gradient --batch-size 32
    python -m benchmarks.profile_ops --preset presets/tiny --calls 1  # smoke
"""

import collections
import glob
import os
import sys
import tempfile
import time

from keras_metaopt import cli

SETTINGS = {  # name: (dtype policy, loaded by load_classifier)
    "float32": ("float32", True),
    "mixed_bfloat16": ("mixed_bfloat16", True),
    "mixed_bfloat16, Keras's policy alone": ("mixed_bfloat16", False),
}

# Events on the op threads that are the executor's, not ops (they span them).
EXECUTOR = {"Process", "Run"}


def op_type(op, name):
    """What `op_times` sums by default: the op's type."""
    return op


def op_times(logdir, key=op_type):
    """`{key(op type, op name): seconds}` summed over the CPU events of one
    profile (by default per op type)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # TensorFlow's op threads; not Python or the executor
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op = name.rsplit(":", 1)[-1]  # "scope/op_name:OpType"
                if ":" in name and op.isidentifier() and op not in EXECUTOR:
                    times[key(op, name.rsplit(":", 1)[0])] += event.duration_ps / 1e12
    return times


def profile(classifier, inputs, calls, gradient, key=op_type):
    import keras
    import tensorflow as tf

    labels = tf.zeros(inputs["token_ids"].shape[:1], tf.int32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def forward(x):
        if not gradient:
            return classifier(x, training=False)
        variables = classifier.trainable_variables
        with tf.GradientTape() as tape:
            value = loss(labels, classifier(x, training=True))
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(value, variables)])

    for _ in range(2):
        forward(inputs).numpy()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(calls):
            forward(inputs).numpy()
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        times = op_times(logdir, key)
    return wall / calls, {op: t / calls for op, t in times.items()}


def load_frozen(preset, policy, as_loaded=True):
    """The classifier as profiled: loaded as every entry point loads it
    (`load_classifier`; plain keras-hub with `as_loaded=False`) in `policy`,
    its 3-class head drawn with seed 0, the embeddings frozen as the trainers
    freeze them."""
    import keras
    import keras_hub

    from keras_metaopt.models import load_classifier
    from trainers.run import freeze_groups

    keras.utils.set_random_seed(0)  # the same head in every setting
    load = load_classifier if as_loaded else keras_hub.models.TextClassifier.from_preset
    classifier = load(preset, num_classes=3, activation=None, dtype=policy)
    freeze_groups(classifier, ("embeddings",))
    return classifier


def random_batch(classifier, batch_size, length):
    """Random token ids, no padding, zeros for any other input (segment ids)."""
    import numpy as np
    import tensorflow as tf

    shape = (batch_size, length)
    ids = np.random.default_rng(0).integers(5, 100, shape)
    inputs = {name: tf.zeros(shape, tf.int32) for name in classifier.backbone.input}
    inputs["token_ids"] = tf.constant(ids, tf.int32)
    inputs["padding_mask"] = tf.ones(shape, tf.bool)
    return inputs


def main(argv=None):
    parser = cli.parser(
        prog="python -m benchmarks.profile_ops",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--preset", required=True, help="Encoder preset directory.")
    parser.add_argument(
        "--pass", dest="pass_", choices=("forward", "gradient"), default="forward",
        help="The forward pass alone, or a training step's loss and gradient.",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--length", type=int, default=48, help="Tokens per pair.")
    parser.add_argument("--calls", type=int, default=3, help="Profiled calls.")
    parser.add_argument("--top", type=int, default=10, help="Op types shown.")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.length, args.calls, args.top) < 1:
        parser.error("--batch-size, --length, --calls and --top must be >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name, (policy, as_loaded) in SETTINGS.items():
        classifier = load_frozen(args.preset, policy, as_loaded)
        inputs = random_batch(classifier, args.batch_size, args.length)
        wall, times = profile(classifier, inputs, args.calls, args.pass_ == "gradient")
        print(f"## {name}: {wall:.3f} s per call (wall)")
        for op, seconds in sorted(times.items(), key=lambda x: -x[1])[: args.top]:
            print(f"  {op:28s} {seconds:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
