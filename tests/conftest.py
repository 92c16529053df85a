"""Test setup: two logical CPU devices (for MirroredStrategy tests), quiet logs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the 2 logical CPUs, shared by every test.

    Several MirroredStrategy objects in one process reuse collective instance
    keys and abort each other's all-reduces ("Shape mismatch in the collective
    instance"), so in-process tests share this one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, devices
    return tf.distribute.MirroredStrategy(devices)
