"""Inner states of an exact window kept in files instead of memory.

`ExactMetaGradient` keeps the states (θ, m, v, dropout seeds, step) of a
window for its backward sweep: ⌈L/k⌉ + k of them in memory, each three times
the trained parameters (e5-small: 257 MB). `StateFile` writes each stored
state to a file of its own as raw bytes and reads it back once, bit for bit,
so that memory holds only the k states of the segment being swept: k = 1
(nothing recomputed) then holds the fewest. The file system's page cache may
keep the bytes, but they are not the process's memory.

Example:
    >>> import tempfile
    >>> import tensorflow as tf
    >>> from keras_metaopt.state_file import StateFile
    >>> files = StateFile(tempfile.mkdtemp())
    >>> files.put(3, ([tf.ones([2, 2])], tf.constant(7, tf.int64)))
    >>> theta, step = files.pop(3)
    >>> theta[0].numpy().tolist(), int(step), files.keys()
    ([[1.0, 1.0], [1.0, 1.0]], 7, [])
"""

import os
import pathlib
import shutil
import tempfile

import numpy as np
import tensorflow as tf


class StateFile:
    """A file per stored state (a nested structure of tensors) under `directory`.

    `put(key, state)` writes the state and keeps only its layout in memory;
    `pop(key)` reads it back (the same dtypes, shapes, devices and bytes) and
    deletes the file. Values distributed over replicas (`tf.distribute`) are written
    replica by replica and come back distributed the same way. The files live
    in a directory of their own, made under `directory` and removed by
    `close()` (also on exit from a `with` block).
    """

    def __init__(self, directory, strategy=None):
        parent = pathlib.Path(directory)
        parent.mkdir(parents=True, exist_ok=True)
        self.path = pathlib.Path(tempfile.mkdtemp(prefix="states-", dir=parent))
        self.strategy = strategy or tf.distribute.get_strategy()
        self._layouts = {}  # key: (structure, [(distributed, [(dtype, shape, device)])])

    def put(self, key, state):
        if key in self._layouts:
            raise KeyError(f"state {key!r} is stored already")
        leaves = tf.nest.flatten(state)
        layout = []
        with open(self._file(key), "wb") as f:
            for leaf in leaves:
                parts = []
                for value in self._local(leaf):
                    array = np.asarray(value.numpy(), order="C")
                    array.tofile(f)
                    parts.append((array.dtype, array.shape, value.device))
                layout.append(
                    (isinstance(leaf, tf.distribute.DistributedValues), parts)
                )
        structure = tf.nest.map_structure(lambda _: None, state)
        self._layouts[key] = (structure, layout)

    def pop(self, key):
        structure, layout = self._layouts.pop(key)
        path = self._file(key)
        leaves = []
        with open(path, "rb") as f:
            for distributed, parts in layout:
                values = []
                for dtype, shape, device in parts:
                    array = np.fromfile(f, dtype, int(np.prod(shape)))
                    with tf.device(device):  # where it was
                        values.append(tf.identity(array.reshape(shape)))
                leaves.append(self._distributed(values) if distributed else values[0])
        os.remove(path)
        return tf.nest.pack_sequence_as(structure, leaves)

    def keys(self):
        return sorted(self._layouts, key=str)

    def close(self):
        self._layouts.clear()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _file(self, key):
        return self.path / f"{key}.bin"

    def _local(self, leaf):
        if isinstance(leaf, tf.distribute.DistributedValues):
            return self.strategy.experimental_local_results(leaf)
        return [leaf]

    def _distributed(self, values):
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: values[context.replica_id_in_sync_group]
        )
