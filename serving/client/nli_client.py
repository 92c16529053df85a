"""A PredictionService client for the NLI signature (works with TF Serving)."""

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.client.tensor_proto import string_tensor, to_array
from serving.metadata_fields import REQUEST_LIMITS_FIELD, SIGNATURE_DEF_FIELD
from serving.saved_model_layout import CLIENT_OUTPUTS, PREDICT_SIGNATURE, TEXT_INPUTS

_JSON_OPTIONS = dict(
    preserving_proto_field_name=True, always_print_fields_with_no_presence=True
)


class NliClient:
    """Sends premise/hypothesis batches to ``Predict`` and reads the answers.

    Speaks only the standard PredictionService/ModelService API (string inputs
    ``premise`` and ``hypothesis``; outputs ``probabilities`` and
    ``label_name``), so it works unchanged against ``tensorflow_model_server``.
    It does not import TensorFlow itself (see :mod:`serving.client.proto_imports`).
    RPC failures surface as ``grpc.RpcError``.

    Usage (needs a running server):

        with NliClient("127.0.0.1:8500") as client:
            labels, probs = client.predict(["A man plays."], ["A man is playing."])
        labels, probs.shape  # (['entailment'], (1, 3))
    """

    def __init__(
        self,
        target: str = "127.0.0.1:8500",
        model_name: str = "nli",
        signature_name: str = PREDICT_SIGNATURE,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float = 30.0,
        root_certificates: bytes | None = None,
        ssl_target_name: str | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ):
        if version is not None and version_label is not None:
            raise ValueError("give a version or a version label, not both")
        self.target = target
        self.model_name = model_name
        self.signature_name = signature_name
        self.version = version
        self.version_label = version_label
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if root_certificates is not None:
            if ssl_target_name:
                options.append(("grpc.ssl_target_name_override", ssl_target_name))
            credentials = grpc.ssl_channel_credentials(root_certificates)
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.last_model_spec = None

    def _fill_spec(self, spec, signature: bool = True) -> None:
        spec.name = self.model_name
        if signature:
            spec.signature_name = self.signature_name
        if self.version is not None:
            spec.version.value = self.version
        if self.version_label is not None:
            spec.version_label = self.version_label

    def request(self, premises, hypotheses) -> predict_pb2.PredictRequest:
        """The PredictRequest for a batch of pairs."""
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec)
        for name, texts in zip(TEXT_INPUTS, (premises, hypotheses), strict=True):
            request.inputs[name].CopyFrom(string_tensor(texts, tensor_pb2.TensorProto))
        request.output_filter.extend(CLIENT_OUTPUTS)
        return request

    def predict(self, premises, hypotheses) -> tuple[list[str], np.ndarray]:
        """Label names and ``[batch, 3]`` float32 probabilities for the pairs."""
        if len(premises) != len(hypotheses):
            raise ValueError("premises and hypotheses differ in length")
        response = self.stub.Predict(
            self.request(premises, hypotheses), timeout=self.timeout
        )
        self.last_model_spec = response.model_spec
        probabilities = to_array(response.outputs["probabilities"])
        labels = [v.decode("utf-8") for v in to_array(response.outputs["label_name"])]
        return labels, probabilities

    def metadata(self) -> dict:
        """GetModelMetadata (signature_def) as JSON-ready dict, like the REST API."""
        from google.protobuf import json_format

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_spec(request.model_spec, signature=False)
        request.metadata_field.append(SIGNATURE_DEF_FIELD)
        response = self.stub.GetModelMetadata(request, timeout=self.timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        result = {
            "model_spec": json_format.MessageToDict(
                response.model_spec, **_JSON_OPTIONS
            ),
            "metadata": {
                SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                    signature_map, **_JSON_OPTIONS
                )
            },
        }
        limits = self.request_limits()
        if limits is not None:
            result["metadata"][REQUEST_LIMITS_FIELD] = limits
        return result

    def request_limits(self) -> dict | None:
        """This server's request limits, or None from a server without them
        (tensorflow_model_server answers INVALID_ARGUMENT for the field)."""
        from google.protobuf import struct_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_spec(request.model_spec, signature=False)
        request.metadata_field.append(REQUEST_LIMITS_FIELD)
        try:
            response = self.stub.GetModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNIMPLEMENTED,
            ):
                return None
            raise
        limits = struct_pb2.Struct()
        if not response.metadata[REQUEST_LIMITS_FIELD].Unpack(limits):
            return None
        return {k: int(v) for k, v in limits.items()}

    def status(self) -> dict:
        """GetModelStatus as a JSON-ready dict, like the REST API."""
        from google.protobuf import json_format

        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec, signature=False)
        response = self.models.GetModelStatus(request, timeout=self.timeout)
        return json_format.MessageToDict(response, **_JSON_OPTIONS)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> "NliClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
