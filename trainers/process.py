"""A trainer's process-wide side effects, in one explicit call.

`setup_process(args)` is the only place a trainer touches global state: the
logical CPU devices (`--cpu-replicas`), the global seeds (`--seed`), op
determinism, Keras's dtype policy (`--precision`), and the distribution
strategy (`--strategy`). Everything after it
(`trainers.run.Run`, the stage loop) only reads what it set up.
"""

import logging

import keras
import tensorflow as tf

logger = logging.getLogger("keras_metaopt.trainers")


def setup_process(args):
    """Sets up devices, seeds and determinism; returns the strategy to train under.

    Call it once, before anything else uses TensorFlow: splitting the CPU into
    `--cpu-replicas` logical devices must happen before TensorFlow initialises
    its devices.
    """
    if args.cpu_replicas > 1:
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas
        )
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    set_precision(args.precision)
    strategy = make_strategy(args.strategy)
    logger.info(
        "%s with %d replica(s)",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    return strategy


def set_precision(policy):
    """Keras's global dtype policy `policy` ("float32", "mixed_bfloat16"), with
    floatx left at float32: under a mixed policy the variables, φ, the
    optimizers' moments and the losses stay float32 and only the layers
    compute in bfloat16. Set both before any layer is built (Keras caches the
    policy a layer was built with)."""
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy(policy)


def make_strategy(name):
    """The `--strategy` named `name` over the devices TensorFlow sees."""
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPUs (one unless split).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()
