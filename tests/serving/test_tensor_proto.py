"""The client's TensorFlow-free TensorProto helpers agree with TensorFlow's."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from serving.client.tensor_proto import string_tensor, to_array


@pytest.mark.parametrize(
    "proto",
    [
        tf.make_tensor_proto(np.arange(6, dtype=np.float32).reshape(2, 3)),
        tf.make_tensor_proto(np.arange(4, dtype=np.int32)),
        tf.make_tensor_proto(np.array([7, -8], dtype=np.int64)),
        tf.make_tensor_proto(np.array([[b"a", "é".encode()]], dtype=object)),
        tf.make_tensor_proto(
            1.5, dtype=tf.float32, shape=[2, 2]
        ),  # one value, repeated
        tensor_pb2.TensorProto(
            dtype=3, tensor_shape={"dim": [{"size": 3}]}, int_val=[1, 2]
        ),  # TensorFlow repeats the last value
    ],
    ids=["float32 content", "int32", "int64", "strings", "broadcast", "short int_val"],
)
def test_to_array_matches_make_ndarray(proto):
    got, want = to_array(proto), tf.make_ndarray(proto)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_string_tensor_matches_make_tensor_proto():
    proto = string_tensor(["a", "é", b"\xff"], tensor_pb2.TensorProto)
    want = tf.make_tensor_proto(np.array([b"a", "é".encode(), b"\xff"], dtype=object))
    assert proto == want
