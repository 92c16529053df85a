"""StateFile: stored states written to files and read back bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import state_file
from keras_metaopt.state_file import StateFile


def _state(seed=0):
    """θ, m, v lists with awkward values, seeds and a step count."""
    rng = np.random.default_rng(seed)
    theta = [
        tf.constant(rng.normal(size=(3, 5)).astype("float32")),
        tf.constant(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45], "float32")),
    ]
    m = [tf.constant(rng.normal(size=(3, 5))), tf.constant(np.float32(2.5))]
    v = [tf.zeros([3, 5]), tf.constant([7.0])]
    seeds = [tf.constant([1, 2], tf.int64), tf.constant([3, 4], tf.uint32)]
    return theta, m, v, seeds, tf.constant(41, tf.int64)


def _same(a, b):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.numpy().tobytes() == y.numpy().tobytes()


def test_a_state_comes_back_bit_for_bit_and_its_file_goes(tmp_path):
    with StateFile(tmp_path) as files:
        files.put(0, _state(0))
        files.put(4, _state(1))
        assert files.keys() == [0, 4]
        files.wait()  # the writes run on the file's own thread
        assert sorted(p.name for p in files.path.iterdir()) == ["0.bin", "4.bin"]
        # Only the layout stays in memory: the file holds every byte.
        assert (files.path / "0.bin").stat().st_size == sum(
            x.numpy().nbytes for x in tf.nest.flatten(_state(0))
        )
        back = files.pop(4)
        assert isinstance(back, tuple) and [len(x) for x in back[:4]] == [2, 2, 2, 2]
        _same(back, _state(1))
        _same(files.pop(0), _state(0))
        assert files.keys() == [] and list(files.path.iterdir()) == []
        directory = files.path
    assert not directory.exists() and tmp_path.exists()


def test_misuse_fails_with_the_key(tmp_path):
    files = StateFile(tmp_path)
    files.put(2, _state())
    with pytest.raises(KeyError, match="state 2 is stored already"):
        files.put(2, _state())
    with pytest.raises(KeyError, match="3"):
        files.pop(3)
    files.close()
    assert list(tmp_path.iterdir()) == []


def test_values_distributed_over_replicas_come_back_on_their_replicas(
    tmp_path, mirrored
):
    def per_replica():
        context = tf.distribute.get_replica_context()
        r = tf.cast(context.replica_id_in_sync_group, tf.float32)
        return [tf.fill([2, 3], r + 0.5)], tf.constant(9, tf.int64) + tf.cast(
            r, tf.int64
        )

    state = mirrored.run(per_replica)
    with StateFile(tmp_path, mirrored) as files:
        files.put(0, state)
        back = files.pop(0)
    for before, after in zip(tf.nest.flatten(state), tf.nest.flatten(back)):
        assert isinstance(after, tf.distribute.DistributedValues)
        old = mirrored.experimental_local_results(before)
        new = mirrored.experimental_local_results(after)
        assert [x.device for x in new] == [x.device for x in old]
        for x, y in zip(old, new):
            assert x.numpy().tobytes() == y.numpy().tobytes()
    first = mirrored.experimental_local_results(back[0][0])
    assert [float(x[0, 0]) for x in first] == [0.5, 1.5]


def test_a_failed_write_surfaces_at_the_next_call(tmp_path, monkeypatch):
    def full_disk(path, arrays):
        raise OSError(28, "No space left on device")

    with StateFile(tmp_path) as files:
        monkeypatch.setattr(state_file, "_write", full_disk)
        files.put(0, _state())  # returns: the write runs on the file's thread
        with pytest.raises(OSError, match="No space left"):
            files.pop(0)
        files.put(1, _state())
        with pytest.raises(OSError, match="No space left"):
            files.put(2, _state())
        files.put(3, _state())
        with pytest.raises(OSError, match="No space left"):
            files.wait()
