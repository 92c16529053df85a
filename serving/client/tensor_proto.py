"""TensorProtos for the client without importing TensorFlow (which takes seconds).

Covers the dtypes the NLI signatures use (strings, float32, int32, int64); the
server side uses ``tf.make_tensor_proto`` / ``tf.make_ndarray``.
"""

import numpy as np

# dtype enum (tensorflow/core/framework/types.proto) -> numpy dtype, value field.
_DTYPES = {
    1: (np.float32, "float_val"),
    2: (np.float64, "double_val"),
    3: (np.int32, "int_val"),
    9: (np.int64, "int64_val"),
    10: (np.bool_, "bool_val"),
}
DT_STRING = 7


def string_tensor(values, tensor_proto_cls):
    """A 1-D DT_STRING TensorProto of ``values`` (str encoded as UTF-8, or bytes).

    Example:
        >>> from tensorflow.core.framework import tensor_pb2
        >>> string_tensor(["a", b"b"], tensor_pb2.TensorProto).string_val
        [b'a', b'b']
    """
    proto = tensor_proto_cls(dtype=DT_STRING)
    proto.tensor_shape.dim.add().size = len(values)
    proto.string_val.extend(
        v.encode("utf-8") if isinstance(v, str) else v for v in values
    )
    return proto


def to_array(proto) -> np.ndarray:
    """A TensorProto as a numpy array (strings as an object array of bytes).

    Example (protos made here; from a server: ``response.outputs[...]``):
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> probabilities = tf.make_tensor_proto(np.full((2, 3), 0.25, np.float32))
        >>> to_array(probabilities).shape
        (2, 3)
        >>> from tensorflow.core.framework import tensor_pb2
        >>> to_array(string_tensor(["a", b"b"], tensor_pb2.TensorProto))
        array([b'a', b'b'], dtype=object)
    """
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == DT_STRING:
        return np.array(list(proto.string_val), dtype=object).reshape(shape)
    if proto.dtype not in _DTYPES:
        raise ValueError(f"cannot decode a TensorProto of dtype {proto.dtype}")
    dtype, field = _DTYPES[proto.dtype]
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=dtype)
    else:
        values = np.array(getattr(proto, field), dtype=dtype)
        size = int(np.prod(shape, dtype=np.int64))
        if 0 < values.size < size:  # TensorFlow repeats the last value
            values = np.concatenate(
                [values, np.repeat(values[-1:], size - values.size)]
            )
    return values.reshape(shape)
