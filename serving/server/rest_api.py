"""TF Serving's REST API (``/v1/models/...``) beside the gRPC server.

Follows tensorflow_model_server's HTTP handler
(tensorflow_serving/model_servers/http_rest_api_handler.cc, http_rest_api_util.cc
and util/json_tensor.cc; documented in g3doc/api_rest.md): the JSON body becomes
the same request proto the gRPC API takes, runs through the same servicers (so
the same model manager, checks and request batcher), and the response proto
becomes JSON. HTTP is served by Werkzeug's threaded WSGI server (`rest_server`); JSON
becomes tensors in `rest_codec`.
"""

import json
import logging
import re

import grpc
import numpy as np
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from serving.metadata_fields import REQUEST_LIMITS_FIELD, SIGNATURE_DEF_FIELD
from serving.server.in_flight import InFlight
from serving.server.model_servicer import ModelServicer
from serving.server.prediction_servicer import PredictionServicer
from serving.server.request_error import RequestError
from serving.server.rest_codec import (
    array_to_json,
    columns_to_arrays,
    json_excerpt,
    json_to_example,
    rows_to_arrays,
)

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

    Usage (with a ``ModelManager``; serves until killed):

        from werkzeug.serving import make_server
        app = RestApi(PredictionServicer(manager), ModelServicer(manager))
        make_server("127.0.0.1", 8501, app, threaded=True).serve_forever()
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
            raise RequestError.invalid(
                f"JSON Value: {json_excerpt(document)} Is not object"
            )
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
            arrays = rows_to_arrays(document["instances"], inputs)
        else:
            arrays = columns_to_arrays(document["inputs"], inputs)
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
            json_to_example(document["context"], target.context, "context")
            add = target.examples.add
        else:
            add = request.input.example_list.examples.add
        for i, example in enumerate(examples):
            json_to_example(example, add(), f"examples[{i}]")
        response = self.predictions.classify(request)
        return {
            "results": [
                [[c.label, float(str(np.float32(c.score)))] for c in row.classes]
                for row in response.result.classifications
            ]
        }

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
