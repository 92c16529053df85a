"""TF Serving's PredictionService (Predict, Classify, GetModelMetadata) over gRPC."""

import logging

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.model_manager import ModelManager
from serving.request_error import RequestError

log = logging.getLogger(__name__)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers PredictionService RPCs from the servables of a :class:`ModelManager`.

    Bad requests end with a gRPC status (NOT_FOUND for an unknown model, version,
    label or signature; INVALID_ARGUMENT for malformed inputs), never with a
    crash; an unexpected failure is logged and answered INTERNAL.

    Example:
        >>> server = grpc.server(pool)
        >>> prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        ...     PredictionServicer(manager), server)
    """

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def _answer(self, method, request, context):
        try:
            return method(request)
        except RequestError as err:
            context.abort(err.code, str(err))
        except Exception as err:
            log.exception("%s failed", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}: {err}"
            )

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        return self._answer(self._predict, request, context)

    def Classify(self, request, context):  # noqa: N802
        return self._answer(self._classify, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._answer(self._metadata, request, context)

    def Regress(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not served")

    def MultiInference(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served")

    def _predict(self, request) -> predict_pb2.PredictResponse:
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

    def _classify(self, request) -> classification_pb2.ClassificationResponse:
        servable = self.manager.resolve(request.model_spec)
        name, sig = servable.signature(request.model_spec.signature_name)
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

    def _metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise RequestError.invalid(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in fields:
            if field != "signature_def":
                raise RequestError.invalid(
                    f"metadata field {field!r} is not supported (only signature_def)"
                )
        servable = self.manager.resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response
