"""One loaded model version: signatures, request checks, execution."""

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np

from serving.saved_model_layout import (
    ASSETS_EXTRA,
    CLASSIFY_INPUT,
    CLASSIFY_METHOD,
    METADATA_FILE,
    PREDICT_SIGNATURE,
    TEXT_INPUTS,
    WARMUP_FILE,
)
from serving.server.batching_config import BatchingConfig
from serving.server.request_batcher import RequestBatcher
from serving.server.request_error import RequestError

log = logging.getLogger(__name__)


class Servable:
    """A SavedModel version loaded for serving, with TF Serving's request rules.

    Loads the SavedModel (importing ``tensorflow_text`` first so its ops exist),
    reads the SignatureDefs from ``saved_model.pb`` (served as-is by
    GetModelMetadata), checks every request against them before anything runs,
    and runs signatures directly or through a :class:`RequestBatcher`.

    Usage (needs an exported version in ``models/nli/1``):

        s = Servable("nli", 1, "models/nli/1", BatchingConfig())
        s.warmup()
        arrays = s.prepare("serving_default", request.inputs)
        outputs = s.run("serving_default", arrays)
    """

    def __init__(
        self,
        name: str,
        version: int,
        path,
        batching: BatchingConfig | None = None,
        max_request_batch_size: int = 256,
        max_string_bytes: int = 10_000,
        xla_cpu_compilation_enabled: bool = False,
    ):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers ops used by the graph)
        from tensorflow.core.protobuf import saved_model_pb2

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self.batching = batching or BatchingConfig(enabled=False)
        self.max_request_batch_size = max_request_batch_size
        self.max_string_bytes = max_string_bytes
        started = time.monotonic()
        saved = saved_model_pb2.SavedModel.FromString(
            (self.path / "saved_model.pb").read_bytes()
        )
        self.signature_defs = dict(saved.meta_graphs[0].signature_def)
        self.uses_xla = uses_xla(saved)
        if self.uses_xla and not xla_cpu_compilation_enabled:
            raise ValueError(
                f"{self.path} runs functions with jit_compile=True (exported with "
                "serving.export --jit-compile), and XLA compilation is off: start the "
                "server with --xla-cpu-compilation-enabled (tensorflow_model_server: "
                "--xla_cpu_compilation_enabled=true), or export without --jit-compile"
            )
        self.loaded = tf.saved_model.load(str(self.path))
        self.functions = {
            key: self.loaded.signatures[key]
            for key in self.signature_defs
            if key in self.loaded.signatures
        }
        meta_file = self.path / ASSETS_EXTRA / METADATA_FILE
        self.metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        self.input_limits = self.metadata.get("encoder", {}).get("input_limits", {})
        self._batchers: dict[str, RequestBatcher] = {}
        self._lock = threading.Lock()
        self._closed = False
        log.info(
            "loaded %s version %d from %s in %.1fs (signatures: %s)",
            name,
            self.version,
            self.path,
            time.monotonic() - started,
            ", ".join(sorted(self.functions)),
        )

    # -- signatures ---------------------------------------------------------------

    def signature(self, name: str, method: str = "predict"):
        """The SignatureDef called ``name`` (empty: serving_default), or an error.

        The status follows TF Serving: for Predict an unknown signature is
        FAILED_PRECONDITION ``Serving signature key "X" not found.``
        (servables/tensorflow/predict_util.cc); for Classify it is
        INVALID_ARGUMENT ``No signature was found with the name: X``
        (servables/tensorflow/classifier.cc).
        """
        name = name or PREDICT_SIGNATURE
        if name not in self.functions:
            available = ", ".join(sorted(self.functions))
            if method == "classify":
                raise RequestError.invalid(
                    f"No signature was found with the name: {name} (model "
                    f"{self.name!r} version {self.version} has: {available})"
                )
            raise RequestError.failed_precondition(
                f'Serving signature key "{name}" not found. (model {self.name!r} '
                f"version {self.version} has: {available})"
            )
        return name, self.signature_defs[name]

    def request_limits(self) -> dict[str, int]:
        """The limits :meth:`prepare` enforces, as served in the model metadata."""
        return {
            "max_request_batch_size": self.max_request_batch_size,
            "max_string_bytes": self.max_string_bytes,
        }

    # -- request checks ---------------------------------------------------------

    def prepare(self, signature_name: str, inputs) -> dict[str, np.ndarray]:
        """Check ``inputs`` (name -> TensorProto) against the signature; to arrays."""
        import tensorflow as tf
        from tensorflow.core.framework import types_pb2

        name, sig = self.signature(signature_name)
        expected = sorted(sig.inputs)
        missing = sorted(set(expected) - set(inputs))
        extra = sorted(set(inputs) - set(expected))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected input(s) {', '.join(extra)}")
            raise RequestError.invalid(
                f"{'; '.join(parts)}: signature {name!r} takes exactly "
                f"{', '.join(expected)}"
            )
        arrays, batch_sizes = {}, {}
        for key in expected:
            info, proto = sig.inputs[key], inputs[key]
            if proto.dtype != info.dtype:
                raise RequestError.invalid(
                    f"input {key!r} has dtype {types_pb2.DataType.Name(proto.dtype)}; "
                    f"signature {name!r} expects "
                    f"{types_pb2.DataType.Name(info.dtype)}"
                )
            got = check_tensor_shape(key, proto)
            if not info.tensor_shape.unknown_rank:
                want = [d.size for d in info.tensor_shape.dim]
                if len(got) != len(want) or any(
                    w >= 0 and w != g for w, g in zip(want, got, strict=True)
                ):
                    raise RequestError.invalid(
                        f"input {key!r} has shape {got}; signature {name!r} "
                        f"expects {want} (-1: any size)"
                    )
            if got:
                if got[0] > self.max_request_batch_size:
                    raise RequestError.invalid(
                        f"input {key!r} has batch size {got[0]}, over the limit of "
                        f"{self.max_request_batch_size}"
                    )
                batch_sizes[key] = got[0]
            check_value_count(key, proto, got)
            try:
                arrays[key] = tf.make_ndarray(proto)
            except Exception as err:  # malformed TensorProto content
                raise RequestError.invalid(
                    f"input {key!r} is not a valid TensorProto of shape {got}: {err}"
                ) from None
        if len(set(batch_sizes.values())) > 1:
            sizes = ", ".join(f"{k}={v}" for k, v in sorted(batch_sizes.items()))
            raise RequestError.invalid(f"inputs have different batch sizes: {sizes}")
        for key, array in arrays.items():
            if array.dtype == object:
                if sig.method_name == CLASSIFY_METHOD or key == CLASSIFY_INPUT:
                    self.check_examples(array.reshape(-1), key)
                else:
                    self.check_strings(array.reshape(-1), key)
            elif key in self.input_limits and array.size:
                low, high = int(array.min()), int(array.max())
                limit = int(self.input_limits[key])
                if low < 0 or high >= limit:
                    bad = low if low < 0 else high
                    raise RequestError.invalid(
                        f"input {key!r} values must be in [0, {limit}); got {bad}"
                    )
        return arrays

    def check_strings(self, values, key: str) -> None:
        """INVALID_ARGUMENT for an over-long or non-UTF-8 string."""
        for i, value in enumerate(values):
            if len(value) > self.max_string_bytes:
                raise RequestError.invalid(
                    f"input {key!r}[{i}] is {len(value)} bytes long; the limit is "
                    f"{self.max_string_bytes} bytes"
                )
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RequestError.invalid(
                    f"input {key!r}[{i}] is not valid UTF-8 (byte "
                    f"0x{value[err.start]:02x} at offset {err.start})"
                ) from None

    def check_examples(self, values, key: str = "inputs") -> None:
        """INVALID_ARGUMENT unless each value is a tf.Example with the text features."""
        from google.protobuf.message import DecodeError
        from tensorflow.core.example import example_pb2

        for i, value in enumerate(values):
            try:
                example = example_pb2.Example.FromString(value)
            except DecodeError:
                raise RequestError.invalid(
                    f"input {key!r}[{i}] is not a serialized tf.Example"
                ) from None
            self.check_example(example, f"{key}[{i}]")

    def check_example(self, example, where: str) -> None:
        """INVALID_ARGUMENT unless premise/hypothesis are single UTF-8 strings."""
        features = example.features.feature
        for feature in TEXT_INPUTS:
            if feature not in features:
                raise RequestError.invalid(f"{where}: missing feature {feature!r}")
            kind = features[feature].WhichOneof("kind")
            values = features[feature].bytes_list.value
            if kind != "bytes_list" or len(values) != 1:
                raise RequestError.invalid(
                    f"{where}: feature {feature!r} must be a bytes_list with exactly "
                    f"one value"
                )
            self.check_strings(values, f"{where}.{feature}")

    # -- execution ---------------------------------------------------------------

    def _call(self, name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            outputs = self.functions[name](
                **{k: tf.constant(v) for k, v in arrays.items()}
            )
        except tf.errors.InvalidArgumentError as err:
            raise RequestError.invalid(
                f"the model rejected the input: {err.message}"
            ) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def _batcher(self, name: str, sig) -> RequestBatcher | None:
        if not self.batching.enabled or not sig.inputs:
            return None
        with self._lock:
            if self._closed:
                return None
            batcher = self._batchers.get(name)
            if batcher is None:
                batcher = RequestBatcher(
                    lambda arrays: self._call(name, arrays),
                    max_batch_size=self.batching.max_batch_size,
                    batch_timeout_micros=self.batching.batch_timeout_micros,
                    num_batch_threads=self.batching.num_batch_threads,
                    max_enqueued_batches=self.batching.max_enqueued_batches,
                    name=f"batch-{self.name}-{self.version}-{name}",
                )
                self._batchers[name] = batcher
            return batcher

    def run(
        self, signature_name: str, arrays: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run checked inputs (from :meth:`prepare`) through the signature."""
        name, sig = self.signature(signature_name)
        batcher = self._batcher(name, sig)
        if batcher is None:
            return self._call(name, arrays)
        return batcher.submit(arrays)

    def warmup(self) -> int:
        """Replay ``assets.extra/tf_serving_warmup_requests``; returns the count."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.path / ASSETS_EXTRA / WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            record = prediction_log_pb2.PredictionLog.FromString(raw)
            kind = record.WhichOneof("log_type")
            if kind == "predict_log":
                request = record.predict_log.request
                sig = request.model_spec.signature_name
                self._call(self.signature(sig)[0], self.prepare(sig, request.inputs))
            elif kind == "classify_log":
                request = record.classify_log.request
                sig = request.model_spec.signature_name
                examples = self.examples(request.input)
                self._call(self.signature(sig)[0], {"inputs": examples})
            else:
                raise ValueError(f"unsupported warmup record type {kind!r}")
            count += 1
        log.info(
            "%s version %d: replayed %d warmup requests", self.name, self.version, count
        )
        return count

    def examples(self, input_proto) -> np.ndarray:
        """A checked ``tensorflow.serving.Input`` as serialized tf.Examples."""
        from tensorflow.core.example import example_pb2

        kind = input_proto.WhichOneof("kind")
        if kind == "example_list":
            examples, context = list(input_proto.example_list.examples), None
        elif kind == "example_list_with_context":
            examples = list(input_proto.example_list_with_context.examples)
            context = input_proto.example_list_with_context.context
        else:
            raise RequestError.invalid("input holds no examples")
        if not examples:
            raise RequestError.invalid("input holds no examples")
        if len(examples) > self.max_request_batch_size:
            raise RequestError.invalid(
                f"{len(examples)} examples, over the limit of "
                f"{self.max_request_batch_size}"
            )
        serialized = []
        for i, example in enumerate(examples):
            if context is not None:
                merged = example_pb2.Example()
                for key, feature in context.features.feature.items():
                    merged.features.feature[key].CopyFrom(feature)
                for key, feature in example.features.feature.items():
                    merged.features.feature[key].CopyFrom(feature)
                example = merged
            self.check_example(example, f"example {i}")
            serialized.append(example.SerializeToString())
        return np.array(serialized, dtype=object)

    def close(self, timeout: float | None = None) -> bool:
        """Finish queued batches (for up to ``timeout`` s); True if all finished.

        Requests still queued after ``timeout`` are answered UNAVAILABLE; after
        closing, requests run directly.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closed = True
            batchers, self._batchers = list(self._batchers.values()), {}
        clean = True
        for batcher in batchers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            clean = batcher.close(timeout=left) and clean
        return clean


# TensorProto field holding the values of each dtype (tensor.proto), and the
# bytes per value in ``tensor_content``.
_VALUE_FIELDS = {
    1: ("float_val", 4),  # DT_FLOAT
    2: ("double_val", 8),  # DT_DOUBLE
    3: ("int_val", 4),  # DT_INT32
    4: ("int_val", 1),  # DT_UINT8
    5: ("int_val", 2),  # DT_INT16
    6: ("int_val", 1),  # DT_INT8
    7: ("string_val", None),  # DT_STRING
    9: ("int64_val", 8),  # DT_INT64
    10: ("bool_val", 1),  # DT_BOOL
}


def uses_xla(saved_model) -> bool:
    """Whether a ``SavedModel`` proto holds functions that must be compiled by
    XLA (``tf.function(jit_compile=True)``); tensorflow_model_server fails their
    first request unless ``--xla_cpu_compilation_enabled=true``."""
    return any(
        function.attr["_XlaMustCompile"].b
        for meta_graph in saved_model.meta_graphs
        for function in meta_graph.graph_def.library.function
        if "_XlaMustCompile" in function.attr
    )


def check_tensor_shape(key: str, proto) -> list[int]:
    """The dimensions of a request TensorProto; INVALID_ARGUMENT if impossible.

    TensorFlow's ``Tensor::FromProto`` fails on a negative dimension or an
    unknown rank, which TF Serving answers with INVALID_ARGUMENT
    ("tensor parsing error", servables/tensorflow/predict_util.cc); numpy
    would instead read -1 as "infer this dimension", so check it here.
    """
    got = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank:
        raise RequestError.invalid(
            f"tensor parsing error: {key}: the shape has an unknown rank; give "
            f"every dimension"
        )
    if any(size < 0 for size in got):
        raise RequestError.invalid(
            f"tensor parsing error: {key}: shape {got} has a negative dimension; "
            f"every dimension must be >= 0"
        )
    return got


def check_value_count(key: str, proto, shape: list[int]) -> None:
    """INVALID_ARGUMENT unless ``proto`` holds exactly one value per element."""
    field = _VALUE_FIELDS.get(proto.dtype)
    if field is None:
        return
    name, itemsize = field
    wanted = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if proto.tensor_content and itemsize is not None:
        size = len(proto.tensor_content)
        if size % itemsize:
            raise RequestError.invalid(
                f"tensor parsing error: {key}: tensor_content holds {size} bytes, "
                f"not a whole number of {itemsize}-byte values"
            )
        count = size // itemsize
    else:
        count = len(getattr(proto, name))
    if count != wanted:
        raise RequestError.invalid(
            f"tensor parsing error: {key}: shape {shape} needs {wanted} value(s) "
            f"but the tensor holds {count}"
        )
