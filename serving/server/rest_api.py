"""TF Serving's REST API (``/v1/models/...``) beside the gRPC server.

Follows tensorflow_model_server's HTTP handler
(tensorflow_serving/model_servers/http_rest_api_handler.cc, http_rest_api_util.cc
and util/json_tensor.cc; documented in g3doc/api_rest.md): the JSON body becomes
the same request proto the gRPC API takes, runs through the same servicers (so
the same model manager, checks and request batcher), and the response proto
becomes JSON. HTTP is served by Werkzeug's threaded WSGI server.
"""

import base64
import json
import logging
import re
import threading

import grpc
import numpy as np
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from serving.metadata_fields import REQUEST_LIMITS_FIELD, SIGNATURE_DEF_FIELD
from serving.server.in_flight import InFlight
from serving.server.model_servicer import ModelServicer
from serving.server.prediction_servicer import PredictionServicer
from serving.server.request_error import RequestError

log = logging.getLogger(__name__)

# The URL patterns of http_rest_api_util.cc (kPredictionApiGegex,
# kModelStatusApiRegex), matched against the whole path.
PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)"
)
MODEL_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?"
)
API_PREFIX = re.compile(r"(?i)/v1/")
INT64_MAX = 2**63 - 1  # the largest ModelSpec.version
BASE64_KEY = "b64"
BYTES_SUFFIX = "_bytes"  # string outputs named *_bytes are sent as {"b64": ...}

_DT_STRING, _DT_BOOL = 7, 10
_NUMPY_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
}
_FLOAT_DTYPES = {1, 2}


def _debug(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 100 else text[:97] + "..."


def _leaf(value, dtype: int, where: str):
    """One JSON scalar as a value of the signature's dtype."""
    if dtype == _DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict) and list(value) == [BASE64_KEY]:
            try:
                return base64.b64decode(value[BASE64_KEY], validate=True)
            except (ValueError, TypeError):
                raise RequestError.invalid(
                    f"{where}: JSON Value: {_debug(value)} is not valid base64"
                ) from None
    elif dtype == _DT_BOOL:
        if isinstance(value, bool):
            return value
    elif dtype in _FLOAT_DTYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif dtype in _NUMPY_DTYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    kind = "string" if dtype == _DT_STRING else np.dtype(_NUMPY_DTYPES[dtype]).name
    raise RequestError.invalid(
        f"{where}: JSON Value: {_debug(value)} is not of expected type: {kind}"
    )


def json_to_array(value, dtype: int, where: str) -> np.ndarray:
    """A (nested-list) JSON value as a dense array of a TensorFlow dtype enum."""
    if dtype != _DT_STRING and dtype not in _NUMPY_DTYPES:
        raise RequestError.invalid(f"{where}: dtype {dtype} is not supported in JSON")

    def shape_of(v):
        if isinstance(v, list):
            if not v:
                return [0]
            inner = [shape_of(x) for x in v]
            if any(s != inner[0] for s in inner):
                raise RequestError.invalid(
                    f"{where}: lists of different lengths (a tensor must be "
                    f"rectangular): {_debug(v)}"
                )
            return [len(v), *inner[0]]
        return []

    shape = shape_of(value)
    flat = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            flat.append(_leaf(v, dtype, where))

    walk(value)
    np_dtype = object if dtype == _DT_STRING else _NUMPY_DTYPES[dtype]
    try:
        array = np.array(flat, dtype=np_dtype)
    except OverflowError:
        raise RequestError.invalid(
            f"{where}: a value does not fit {np.dtype(np_dtype).name}"
        ) from None
    return array.reshape(shape)


def array_to_json(name: str, array: np.ndarray):
    """An output array as JSON values (strings decoded; ``*_bytes`` as b64)."""
    if array.dtype == object:
        if name.endswith(BYTES_SUFFIX):
            convert = lambda b: {BASE64_KEY: base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            convert = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        flat = [convert(b) for b in array.reshape(-1)]
    elif array.dtype == np.float32:
        # float32's shortest round-trip digits, as TF Serving writes them.
        flat = [float(str(v)) for v in array.reshape(-1)]
    else:
        flat = array.reshape(-1).tolist()
    if array.ndim == 0:
        return flat[0]
    nested = flat
    for size in reversed(array.shape[1:]):
        nested = [nested[i : i + size] for i in range(0, len(nested), size)]
    return nested


class RestApi:
    """The WSGI application: routes ``/v1/models/...`` like tensorflow_model_server.

    * ``POST /v1/models/NAME[/versions/N|/labels/L]:predict``: row format
      ``{"instances": [...]}`` → ``{"predictions": [...]}``, or columnar
      ``{"inputs": ...}`` → ``{"outputs": ...}``; optional ``signature_name``.
    * ``POST ...:classify``: ``{"examples": [...], "context": {...}}`` →
      ``{"results": [[[label, score], ...], ...]}``.
    * ``GET /v1/models/NAME[/versions/N|/labels/L]``: GetModelStatus as JSON;
      ``.../metadata``: GetModelMetadata (signature_def; plus this server's
      ``request_limits``).

    Errors are ``{"error": "..."}`` with TF Serving's HTTP code for the status.

    Example:
        >>> app = RestApi(PredictionServicer(manager), ModelServicer(manager))
        >>> make_server("127.0.0.1", 8501, app, threaded=True).serve_forever()
    """

    def __init__(
        self,
        predictions: PredictionServicer,
        models: ModelServicer,
        max_body_bytes: int = 16 * 1024 * 1024,
    ):
        self.predictions = predictions
        self.models = models
        self.max_body_bytes = max_body_bytes
        self.in_flight = InFlight()

    def __call__(self, environ, start_response):
        with self.in_flight:
            response = self._respond(Request(environ))
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        # One byte over the limit, so that `_json` can tell a body of exactly
        # the limit from a longer one: a chunked body has no Content-Length, and
        # Werkzeug cuts its stream at the limit instead of refusing it.
        request.max_content_length = self.max_body_bytes + 1
        try:
            body = self._dispatch(request)
            status = 200
        except RequestError as err:
            body, status = {"error": str(err)}, err.http_status
        except RecursionError:
            body = {"error": "JSON Parse error: the document is nested too deeply"}
            status = 400
        except RequestEntityTooLarge:
            body = {
                "error": f"the request body is over the limit of "
                f"{self.max_body_bytes} bytes; send fewer rows per request"
            }
            status = 413
        except Exception as err:
            log.exception("%s %s failed", request.method, request.path)
            body = {"error": f"internal error: {type(err).__name__}: {err}"}
            status = 500
        return Response(
            json.dumps(body, ensure_ascii=False) + "\n",
            status=status,
            mimetype="application/json",
        )

    # -- routing --------------------------------------------------------------------

    def _dispatch(self, request: Request):
        path, method = request.path, request.method
        if not API_PREFIX.match(path):
            raise RequestError.not_found(
                f"no such endpoint: {path}; the REST API lives under /v1/models/"
            )
        malformed = RequestError.invalid(f"Malformed request: {method} {path}")
        if method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, verb = match.groups()
            spec = self._spec(name, version, label)
            document = self._json(request)
            verb = verb.lower()
            if verb == "predict":
                return self.predict(spec, document)
            if verb == "classify":
                return self.classify(spec, document)
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED, "Regress is not served")
        if method == "GET":
            match = MODEL_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, metadata = match.groups()
            if not name:
                raise RequestError.invalid("Missing model name in request.")
            spec = self._spec(name, version, label)
            return self.metadata(spec) if metadata else self.status(spec)
        raise malformed

    @staticmethod
    def _spec(name: str, version: str | None, label: str | None) -> dict:
        spec = {"name": name}
        if version is not None:
            if int(version) > INT64_MAX:  # ModelSpec.version is an int64
                raise RequestError.invalid(
                    f"Failed to convert version: {version} to numeric."
                )
            spec["version"] = int(version)
        if label is not None:
            spec["version_label"] = label
        return spec

    @staticmethod
    def _fill_spec(proto_spec, spec: dict, signature_name=None) -> None:
        proto_spec.name = spec["name"]
        if "version" in spec:
            proto_spec.version.value = spec["version"]
        if "version_label" in spec:
            proto_spec.version_label = spec["version_label"]
        if signature_name is not None:
            proto_spec.signature_name = signature_name

    def _json(self, request: Request) -> dict:
        raw = self._body(request)
        if not raw.strip():
            raise RequestError.invalid("JSON Parse error: The document is empty")
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as err:
            raise RequestError.invalid(f"JSON Parse error: {err}") from None
        if not isinstance(document, dict):
            raise RequestError.invalid(f"JSON Value: {_debug(document)} Is not object")
        signature = document.get("signature_name")
        if signature is not None and not isinstance(signature, str):
            raise RequestError.invalid("'signature_name' key must be a string value.")
        return document

    def _body(self, request: Request) -> bytes:
        """The request body; 413 (`RequestEntityTooLarge`) past the limit,
        with or without a Content-Length (chunked)."""
        limit, parts, size = self.max_body_bytes, [], 0
        while size <= limit:
            part = request.stream.read(limit + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > limit:
            raise RequestEntityTooLarge()
        return b"".join(parts)

    # -- predict --------------------------------------------------------------------

    def predict(self, spec: dict, document: dict) -> dict:
        """A predict request body (already parsed) → the response body."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, spec, document.get("signature_name"))
        servable = self.predictions.manager.resolve(request.model_spec)
        _, sig = servable.signature(request.model_spec.signature_name)
        inputs = {k: v.dtype for k, v in sig.inputs.items()}
        has_rows, has_columns = "instances" in document, "inputs" in document
        if has_rows == has_columns:
            raise RequestError.invalid(
                "Missing 'inputs' or 'instances' key"
                if not has_rows
                else "Not formatted correctly: give only one of 'inputs' or 'instances'"
            )
        if has_rows:
            arrays = self._rows(document["instances"], inputs)
        else:
            arrays = self._columns(document["inputs"], inputs)
        for key, array in arrays.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
        response = self.predictions.predict(request)
        outputs = {k: tf.make_ndarray(v) for k, v in sorted(response.outputs.items())}
        if has_columns:
            if len(outputs) == 1:
                ((name, array),) = outputs.items()
                return {"outputs": array_to_json(name, array)}
            return {"outputs": {k: array_to_json(k, v) for k, v in outputs.items()}}
        columns = {k: array_to_json(k, v) for k, v in outputs.items()}
        rows = len(next(iter(columns.values())))
        if len(columns) == 1:
            return {"predictions": next(iter(columns.values()))}
        return {
            "predictions": [{k: columns[k][i] for k in columns} for i in range(rows)]
        }

    @staticmethod
    def _rows(instances, inputs: dict) -> dict:
        if not isinstance(instances, list):
            raise RequestError.invalid("Expecting 'instances' to be an list/array")
        if not instances:
            raise RequestError.invalid("No values in 'instances' array")

        def is_object(v):
            return isinstance(v, dict) and list(v) != [BASE64_KEY]

        objects = is_object(instances[0])
        if not objects and len(inputs) > 1:
            raise RequestError.invalid(
                "instances is a plain list, but expecting list of objects as "
                f"multiple input tensors required ({', '.join(sorted(inputs))})"
            )
        names = sorted(inputs)
        columns = {name: [] for name in names}
        for i, item in enumerate(instances):
            if objects != is_object(item):
                raise RequestError.invalid(
                    f"Expecting {'object' if objects else 'value/list'} at item {i} "
                    f"of 'instances' list"
                )
            if objects:
                if sorted(item) != names:
                    raise RequestError.invalid(
                        f"Failed to process element: {i} of 'instances' list. "
                        f"JSON object keys {sorted(item)} must be equal to: "
                        f"{','.join(names)}"
                    )
                for name in names:
                    columns[name].append(item[name])
            else:
                columns[names[0]].append(item)
        arrays = {}
        for name in names:
            rows = [
                json_to_array(v, inputs[name], f"instances[{i}].{name}")
                for i, v in enumerate(columns[name])
            ]
            shapes = {r.shape for r in rows}
            if len(shapes) > 1:
                raise RequestError.invalid(
                    f"input {name!r}: every instance must have the same shape; "
                    f"got {sorted(shapes)}"
                )
            arrays[name] = np.stack(rows)
        return arrays

    @staticmethod
    def _columns(value, inputs: dict) -> dict:
        names = sorted(inputs)
        if not isinstance(value, dict) or list(value) == [BASE64_KEY]:
            if len(names) > 1:
                raise RequestError.invalid(
                    "inputs is a plain value/list, but expecting an object as "
                    f"multiple input tensors required ({', '.join(names)})"
                )
            value = {names[0]: value}
        missing = [n for n in names if n not in value]
        if missing:
            raise RequestError.invalid(
                f"Missing named input: {missing[0]} in 'inputs' object."
            )
        extra = sorted(set(value) - set(names))
        if extra:
            raise RequestError.invalid(
                f"unexpected input(s) {', '.join(extra)} in 'inputs' object; the "
                f"signature takes {', '.join(names)}"
            )
        return {n: json_to_array(value[n], inputs[n], f"inputs.{n}") for n in names}

    # -- classify -------------------------------------------------------------------

    def classify(self, spec: dict, document: dict) -> dict:
        """A classify request body (already parsed) → the response body."""
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._fill_spec(request.model_spec, spec, document.get("signature_name"))
        examples = document.get("examples")
        if examples is None:
            raise RequestError.invalid(
                "When method is classify, key 'examples' is expected and was not found"
            )
        if not isinstance(examples, list):
            raise RequestError.invalid("Expecting 'examples' value to be an list/array")
        if not examples:
            raise RequestError.invalid("'examples' value is an empty array")
        if "context" in document:
            target = request.input.example_list_with_context
            self._example(document["context"], target.context, "context")
            add = target.examples.add
        else:
            add = request.input.example_list.examples.add
        for i, example in enumerate(examples):
            self._example(example, add(), f"examples[{i}]")
        response = self.predictions.classify(request)
        return {
            "results": [
                [[c.label, float(str(np.float32(c.score)))] for c in row.classes]
                for row in response.result.classifications
            ]
        }

    @staticmethod
    def _example(value, example, where: str) -> None:
        if not isinstance(value, dict):
            raise RequestError.invalid(
                f"{where}: Example must be JSON object but got {_debug(value)}"
            )
        for name, content in value.items():
            feature = example.features.feature[name]
            for item in content if isinstance(content, list) else [content]:
                if isinstance(item, str):
                    feature.bytes_list.value.append(item.encode("utf-8"))
                elif isinstance(item, dict) and list(item) == [BASE64_KEY]:
                    feature.bytes_list.value.append(
                        _leaf(item, _DT_STRING, f"{where}.{name}")
                    )
                elif isinstance(item, bool):
                    feature.int64_list.value.append(int(item))
                elif isinstance(item, int):
                    feature.int64_list.value.append(item)
                elif isinstance(item, float):
                    feature.float_list.value.append(item)
                else:
                    raise RequestError.invalid(
                        f"Feature: {name} has element with unexpected JSON value "
                        f"{_debug(item)} ({where})"
                    )
                if len(feature.ListFields()) != 1:
                    raise RequestError.invalid(
                        f"Feature: {name} mixes value types ({where})"
                    )

    # -- status and metadata --------------------------------------------------------

    def status(self, spec: dict) -> dict:
        """GetModelStatus for ``spec`` as JSON."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec, spec)
        return json_format.MessageToDict(
            self.models.status(request),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )

    def metadata(self, spec: dict) -> dict:
        """GetModelMetadata (signature_def, request_limits) for ``spec`` as JSON."""
        from google.protobuf import json_format, struct_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_spec(request.model_spec, spec)
        request.metadata_field.extend([SIGNATURE_DEF_FIELD, REQUEST_LIMITS_FIELD])
        response = self.predictions.metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        limits = struct_pb2.Struct()
        response.metadata[REQUEST_LIMITS_FIELD].Unpack(limits)
        options = dict(
            preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {
                SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                    signature_map, **options
                ),
                REQUEST_LIMITS_FIELD: {k: int(v) for k, v in limits.items()},
            },
        }


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler with the access log at DEBUG instead of INFO."""

    def log_request(self, code="-", size="-"):
        log.debug('"%s" %s %s', self.requestline, code, size)

    def log(self, type, message, *args):  # noqa: A002  (Werkzeug's signature)
        getattr(log, "debug" if type == "info" else type)(message, *args)


class RestServer:
    """Serves a :class:`RestApi` on ``host:port`` in a background thread.

    Example:
        >>> rest = RestServer(RestApi(predictions, models), port=0)
        >>> port = rest.start()
        >>> rest.stop(grace=10)
    """

    def __init__(self, app: RestApi, host="127.0.0.1", port=8501, ssl_context=None):
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._server = None
        self._thread = None

    def start(self) -> int:
        """Start listening; returns the bound port."""
        try:
            server = make_server(
                self.host,
                self.port,
                self.app,
                threaded=True,
                request_handler=_QuietHandler,
                ssl_context=self.ssl_context,
            )
        except (OSError, SystemExit) as err:  # Werkzeug exits on a busy port
            raise OSError(
                f"cannot listen on {self.host}:{self.port} for the REST API "
                f"({err}); pick another --rest-api-port (0 turns REST off)"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="rest", daemon=True
        )
        self._thread.start()
        return server.server_port

    def stop(self, grace: float) -> bool:
        """Wait up to ``grace`` s for in-flight requests, then close the port.

        Call after the model manager drains (new requests get 503 meanwhile).
        Returns True if no request was left running.
        """
        if self._server is None:
            return True
        idle = self.app.in_flight.wait_idle(grace)
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        return idle
