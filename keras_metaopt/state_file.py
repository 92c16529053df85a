"""Inner states of an exact window kept in files instead of memory.

`ExactMetaGradient` keeps the states (θ, m, v, dropout seeds, step) of a
window for its backward sweep: ⌈L/k⌉ + k of them in memory, each three times
the trained parameters (e5-small: 257 MB). `StateFile` writes each stored
state to a file of its own as raw bytes and reads it back once, bit for bit,
so that memory holds only the k states of the segment being swept: k = 1
(nothing recomputed) then holds the fewest. The file system's page cache may
keep the bytes, but they are not the process's memory.

Writes run on a thread of their own: `put` returns once the values are
handed over, and the write runs while the next inner step computes (which
holds that state as its input anyway; the thread's own share of the time
and memory was not measured apart from the read-ahead's). Reads are not
run ahead: on 2 cores reading step t − 1's state during step t's products
saved 1.6 % of an exact window's time and held one more state (+0.14× plain
fine-tuning's peak memory; BENCHMARKS.md, "Exact meta-gradient").

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

import concurrent.futures
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
    deletes the file. Writes run on a background thread, one at a time;
    `wait()` returns once the writes handed to it are on disk, and a failed
    write raises at the next `put`, `pop` or `wait`. Values distributed over
    replicas (`tf.distribute`) are written replica by replica and come back
    distributed the same way. The files live in a directory of their own,
    made under `directory` and removed by `close()` (also on exit from a
    `with` block).
    """

    def __init__(self, directory, strategy=None):
        parent = pathlib.Path(directory)
        parent.mkdir(parents=True, exist_ok=True)
        self.path = pathlib.Path(tempfile.mkdtemp(prefix="states-", dir=parent))
        self.strategy = strategy or tf.distribute.get_strategy()
        self._layouts = {}  # key: (structure, [(distributed, [(dtype, shape, device)])])
        self._io = concurrent.futures.ThreadPoolExecutor(1, "state-file")
        self._write = None  # the write in flight

    def put(self, key, state):
        if key in self._layouts:
            raise KeyError(f"state {key!r} is stored already")
        self.wait()  # one write in flight at most, so one state held for it
        leaves = tf.nest.flatten(state)
        arrays, layout = [], []
        for leaf in leaves:
            parts = []
            for value in self._local(leaf):
                array = np.asarray(value.numpy(), order="C")
                arrays.append(array)
                parts.append((array.dtype, array.shape, value.device))
            layout.append((isinstance(leaf, tf.distribute.DistributedValues), parts))
        structure = tf.nest.map_structure(lambda _: None, state)
        self._layouts[key] = (structure, layout)
        self._write = self._io.submit(_write, self._file(key), arrays)

    def pop(self, key):
        if key not in self._layouts:
            raise KeyError(key)
        self.wait()  # its bytes are on disk (and a failed write raises here)
        structure, layout = self._layouts.pop(key)
        values = iter(_read(self._file(key), layout))
        leaves = []
        for distributed, parts in layout:
            local = [next(values) for _ in parts]
            leaves.append(self._distributed(local) if distributed else local[0])
        return tf.nest.pack_sequence_as(structure, leaves)

    def wait(self):
        """Returns once every state handed to `put` is written."""
        if self._write is not None:
            write, self._write = self._write, None
            write.result()

    def keys(self):
        return sorted(self._layouts, key=str)

    def close(self):
        self._io.shutdown(wait=True, cancel_futures=True)
        self._layouts.clear()
        self._write = None
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


def _write(path, arrays):
    with open(path, "wb") as f:
        for array in arrays:
            array.tofile(f)


def _read(path, layout):
    """The tensors of a state's file, each on its device; deletes the file."""
    values = []
    with open(path, "rb") as f:
        for _, parts in layout:
            for dtype, shape, device in parts:
                array = np.fromfile(f, dtype, int(np.prod(shape)))
                with tf.device(device):  # where it was
                    values.append(tf.identity(array.reshape(shape)))
    os.remove(path)
    return values
