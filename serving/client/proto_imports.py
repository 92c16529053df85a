"""Import TF Serving's protos without running ``tensorflow/__init__.py``.

``tensorflow_serving.apis.*_pb2`` import ``tensorflow.core.framework.*_pb2``,
which makes Python import the ``tensorflow`` package first: about 5 s, for a
client that only needs a few protobuf classes. Registering a bare package object
for ``tensorflow`` (same directory, no ``__init__`` run) lets those modules load
in a fraction of a second. Only for processes that never use TensorFlow itself
(the client command line): afterwards ``import tensorflow`` would get the bare
package.
"""

import importlib.util
import sys
import types


def import_protos_without_tensorflow() -> bool:
    """Register the bare ``tensorflow`` package; False if TF is already imported.

    Usage (first thing in a process that never uses TensorFlow itself, as above;
    not in a test session, whose later ``import tensorflow`` it would break):

        import_protos_without_tensorflow()  # True
        from tensorflow_serving.apis import predict_pb2  # ~0.3 s, not ~5 s
    """
    if "tensorflow" in sys.modules:
        return False
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return False
    package = types.ModuleType("tensorflow")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["tensorflow"] = package
    return True
