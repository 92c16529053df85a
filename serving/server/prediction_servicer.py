"""TF Serving's PredictionService (Predict, Classify, GetModelMetadata) over gRPC."""

import logging

import grpc
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.metadata_fields import REQUEST_LIMITS_FIELD, SIGNATURE_DEF_FIELD
from serving.server.in_flight import InFlight
from serving.server.model_manager import ModelManager
from serving.server.request_error import RequestError

log = logging.getLogger(__name__)


def parsing_handler(service: str, methods: dict) -> grpc.GenericRpcHandler:
    """A generic handler that parses requests itself: garbage is INVALID_ARGUMENT.

    ``methods`` maps a method name to ``(behavior, request class, response
    class)``. gRPC's own deserializer would log a traceback and answer INTERNAL
    for bytes that are not the request message; here they get INVALID_ARGUMENT
    and one debug log line.
    """

    def wrap(name, behavior, request_cls):
        def handle(raw: bytes, context):
            try:
                request = request_cls.FromString(raw)
            except DecodeError as err:
                log.debug("%s: unparseable request (%d bytes): %s", name, len(raw), err)
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request body is not a serialized {request_cls.DESCRIPTOR.full_name}"
                    f" ({err})",
                )
            return behavior(request, context)

        return handle

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            wrap(name, behavior, request_cls),
            request_deserializer=None,  # raw bytes
            response_serializer=response_cls.SerializeToString,
        )
        for name, (behavior, request_cls, response_cls) in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)


class PredictionServicer:
    """Answers PredictionService RPCs from the servables of a :class:`ModelManager`.

    Bad requests end with TF Serving's gRPC status (NOT_FOUND for an unknown
    model or version, INVALID_ARGUMENT for an unknown version label or malformed
    inputs, FAILED_PRECONDITION for an unknown Predict signature, UNAVAILABLE
    while shutting down), never with a crash; an unexpected failure is logged
    and answered INTERNAL. ``predict``/``classify``/``metadata`` take and return
    the request/response protos and raise :class:`RequestError`: the REST API
    calls them too.

    Usage (with a ``ModelManager``; ``pool`` a thread pool for the server):

        server = grpc.server(pool)
        PredictionServicer(manager).add_to_server(server)
    """

    SERVICE = "tensorflow.serving.PredictionService"

    def __init__(self, manager: ModelManager):
        self.manager = manager
        self.in_flight = InFlight()  # RPCs being answered (for shutdown)

    def add_to_server(self, server) -> None:
        """Register the service's methods on a ``grpc.Server``."""
        server.add_generic_rpc_handlers(
            (
                parsing_handler(
                    self.SERVICE,
                    {
                        "Predict": (
                            self.Predict,
                            predict_pb2.PredictRequest,
                            predict_pb2.PredictResponse,
                        ),
                        "Classify": (
                            self.Classify,
                            classification_pb2.ClassificationRequest,
                            classification_pb2.ClassificationResponse,
                        ),
                        "GetModelMetadata": (
                            self.GetModelMetadata,
                            get_model_metadata_pb2.GetModelMetadataRequest,
                            get_model_metadata_pb2.GetModelMetadataResponse,
                        ),
                        "Regress": (
                            self.Regress,
                            regression_pb2.RegressionRequest,
                            regression_pb2.RegressionResponse,
                        ),
                        "MultiInference": (
                            self.MultiInference,
                            inference_pb2.MultiInferenceRequest,
                            inference_pb2.MultiInferenceResponse,
                        ),
                    },
                ),
            )
        )

    def _answer(self, method, request, context):
        try:
            with self.in_flight:
                return method(request)
        except RequestError as err:
            context.abort(err.code, str(err))
        except Exception as err:
            log.exception("%s failed", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}: {err}"
            )

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        return self._answer(self.predict, request, context)

    def Classify(self, request, context):  # noqa: N802
        return self._answer(self.classify, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._answer(self.metadata, request, context)

    def Regress(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not served")

    def MultiInference(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served")

    def predict(self, request) -> predict_pb2.PredictResponse:
        """Run a PredictRequest (raises :class:`RequestError`)."""
        import tensorflow as tf

        servable = self.manager.resolve(request.model_spec)
        name, sig = servable.signature(request.model_spec.signature_name)
        wanted = list(dict.fromkeys(request.output_filter)) or sorted(sig.outputs)
        unknown = [key for key in wanted if key not in sig.outputs]
        if unknown:
            raise RequestError.invalid(
                f"output_filter names unknown output(s) {', '.join(unknown)}; "
                f"signature {name!r} has outputs {', '.join(sorted(sig.outputs))}"
            )
        outputs = servable.run(name, servable.prepare(name, request.inputs))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    def classify(self, request) -> classification_pb2.ClassificationResponse:
        """Run a ClassificationRequest (raises :class:`RequestError`)."""
        servable = self.manager.resolve(request.model_spec)
        name, sig = servable.signature(request.model_spec.signature_name, "classify")
        if list(sig.inputs) != ["inputs"] or not {"classes", "scores"} & set(
            sig.outputs
        ):
            raise RequestError.invalid(
                f"signature {name!r} is not a classification signature (it takes "
                f"{', '.join(sorted(sig.inputs))}); use signature_name 'classify'"
            )
        outputs = servable.run(name, {"inputs": servable.examples(request.input)})
        response = classification_pb2.ClassificationResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = name
        scores = outputs.get("scores")
        classes = outputs.get("classes")
        rows = len(scores) if scores is not None else len(classes)
        for i in range(rows):
            result = response.result.classifications.add()
            width = scores.shape[1] if scores is not None else classes.shape[1]
            for j in range(width):
                entry = result.classes.add()
                if classes is not None:
                    entry.label = classes[i][j].decode("utf-8")
                if scores is not None:
                    entry.score = float(scores[i][j])
        return response

    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Answer a GetModelMetadataRequest (raises :class:`RequestError`)."""
        fields = list(request.metadata_field)
        if not fields:
            raise RequestError.invalid(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in fields:
            if field not in (SIGNATURE_DEF_FIELD, REQUEST_LIMITS_FIELD):
                raise RequestError.invalid(
                    f"metadata field {field!r} is not supported (only "
                    f"{SIGNATURE_DEF_FIELD} and {REQUEST_LIMITS_FIELD})"
                )
        servable = self.manager.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        if SIGNATURE_DEF_FIELD in fields:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        if REQUEST_LIMITS_FIELD in fields:
            limits = struct_pb2.Struct()
            limits.update(servable.request_limits())
            response.metadata[REQUEST_LIMITS_FIELD].Pack(limits)
        return response
