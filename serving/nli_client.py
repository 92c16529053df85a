"""A PredictionService client for the NLI signature (works with TF Serving)."""

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class NliClient:
    """Sends premise/hypothesis batches to ``Predict`` and reads the answers.

    Speaks only the standard PredictionService API (string inputs ``premise`` and
    ``hypothesis``; outputs ``probabilities`` and ``label_name``), so it works
    unchanged against ``tensorflow_model_server``. RPC failures surface as
    ``grpc.RpcError``.

    Example:
        >>> with NliClient("127.0.0.1:8500") as client:
        ...     labels, probs = client.predict(["A man plays."], ["A man is playing."])
        >>> labels, probs.shape
        (['entailment'], (1, 3))
    """

    def __init__(
        self,
        target: str = "127.0.0.1:8500",
        model_name: str = "nli",
        signature_name: str = "serving_default",
        version: int | None = None,
        version_label: str | None = None,
        timeout: float = 30.0,
        root_certificates: bytes | None = None,
        ssl_target_name: str | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ):
        if version is not None and version_label is not None:
            raise ValueError("give a version or a version label, not both")
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
        self.last_model_spec = None

    def request(self, premises, hypotheses) -> predict_pb2.PredictRequest:
        """The PredictRequest for a batch of pairs."""
        import tensorflow as tf

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        if self.version_label is not None:
            request.model_spec.version_label = self.version_label
        for name, texts in (("premise", premises), ("hypothesis", hypotheses)):
            values = np.array(
                [t.encode("utf-8") if isinstance(t, str) else t for t in texts],
                dtype=object,
            )
            request.inputs[name].CopyFrom(
                tf.make_tensor_proto(values, shape=[len(values)])
            )
        request.output_filter.extend(["probabilities", "label_name"])
        return request

    def predict(self, premises, hypotheses) -> tuple[list[str], np.ndarray]:
        """Label names and ``[batch, 3]`` float32 probabilities for the pairs."""
        import tensorflow as tf

        if len(premises) != len(hypotheses):
            raise ValueError("premises and hypotheses differ in length")
        response = self.stub.Predict(
            self.request(premises, hypotheses), timeout=self.timeout
        )
        self.last_model_spec = response.model_spec
        probabilities = tf.make_ndarray(response.outputs["probabilities"])
        labels = [
            v.decode("utf-8") for v in tf.make_ndarray(response.outputs["label_name"])
        ]
        return labels, probabilities

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> "NliClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
