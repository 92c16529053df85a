"""The ``tf.Module`` that becomes the exported SavedModel."""

import tensorflow as tf

from keras_metaopt.data import trim_to_longest
from serving.saved_model_layout import (
    CLASSIFY_INPUT,
    CLASSIFY_SIGNATURE,
    PREDICT_SIGNATURE,
    TEXT_INPUTS,
    TOKEN_IDS_SIGNATURE,
)


class ServingModule(tf.Module):
    """Wraps a keras-hub ``TextClassifier`` (logits out) in serving signatures.

    Signatures (all share one set of variables):

    * ``serving_default``: string ``premise``/``hypothesis`` ``[batch]`` ->
      ``probabilities`` float32 ``[batch, 3]``, ``label`` int32, ``label_name``
      string. Tokenized in the graph by the classifier's own preprocessor
      (tensorflow-text ops), so truncation and packing are exactly as in training;
      the encoder then runs on the batch's longest pair only (length-aware).
    * ``predict_token_ids``: the backbone's own inputs (``token_ids``, optional
      ``segment_ids``, ``padding_mask``; int32 ``[batch, sequence_length]``), same
      outputs, for servers whose tf-text ops differ from the training version;
      trailing columns that are padding in every row are not run.
    * ``classify``: serialized ``tf.Example`` (features ``premise``, ``hypothesis``)
      -> ``classes`` string ``[batch, 3]``, ``scores`` float32 ``[batch, 3]``.

    Also saved: ``tokenize(premise, hypothesis)`` (not a signature; used by the
    export check) and ``metadata_json``, a string variable holding the export's
    metadata.

    With ``jit_compile=True`` the encoder, softmax and argmax run as one XLA
    computation (``tf.function(jit_compile=True)``), about 1.5x faster for e5-small
    (BENCHMARKS.md). XLA compiles once per input shape, so the shapes are
    bucketed: the length is rounded up to a multiple of ``length_multiple`` and
    the batch to a power of two (extra rows repeat the last one and are cut off
    again). Such an export needs XLA at serving time: ``tensorflow_model_server
    --xla_cpu_compilation_enabled=true`` (it fails the first request without
    it), ``python -m serving.server --xla-cpu-compilation-enabled``.

    Usage (with a trained classifier, e.g. ``RunDir.load_classifier()``):

        module = ServingModule(classifier, labels, '{"labels": []}')
        tf.saved_model.save(module, path, signatures=module.signatures())
    """

    def __init__(
        self,
        classifier,
        labels,
        metadata_json: str,
        jit_compile: bool = False,
        length_multiple: int = 1,
    ):
        super().__init__(name="nli_serving")
        if length_multiple < 1:
            raise ValueError(f"length_multiple must be >= 1, got {length_multiple}")
        self.jit_compile = bool(jit_compile)
        self.length_multiple = int(length_multiple)
        self.classifier = classifier
        self.preprocessor = classifier.preprocessor
        self.sequence_length = int(self.preprocessor.sequence_length)
        backbone_inputs = classifier.backbone.input
        if not isinstance(backbone_inputs, dict):
            raise ValueError("the classifier's backbone must take a dict of inputs")
        order = ("token_ids", "segment_ids", "padding_mask")
        self.id_inputs = [k for k in order if k in backbone_inputs] + sorted(
            k for k in backbone_inputs if k not in order
        )
        self.input_dtypes = {
            k: tf.as_dtype(backbone_inputs[k].dtype) for k in self.id_inputs
        }
        self.labels = tf.constant(list(labels))
        self.metadata_json = tf.Variable(metadata_json, trainable=False, name="meta")

        text_spec = [tf.TensorSpec([None], tf.string, name=n) for n in TEXT_INPUTS]
        self.tokenize = tf.function(
            self._tokenize, input_signature=text_spec, autograph=False
        )
        self.serve_text = tf.function(
            self._serve_text, input_signature=text_spec, autograph=False
        )
        ids_spec = [
            tf.TensorSpec([None, self.sequence_length], tf.int32, name=n)
            for n in self.id_inputs
        ]
        self.serve_token_ids = tf.function(
            self._serve_token_ids, input_signature=ids_spec, autograph=False
        )
        if self.jit_compile:
            dynamic = {
                n: tf.TensorSpec([None, None], tf.int32, name=n) for n in self.id_inputs
            }
            self.encode = tf.function(
                self._encode,
                input_signature=[dynamic],
                jit_compile=True,
                autograph=False,
            )
        self.serve_classify = tf.function(
            self._serve_classify,
            input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)],
            autograph=False,
        )

    def signatures(self) -> dict:
        """The signature map to pass to ``tf.saved_model.save``."""
        return {
            PREDICT_SIGNATURE: self.serve_text,
            TOKEN_IDS_SIGNATURE: self.serve_token_ids,
            CLASSIFY_SIGNATURE: self.serve_classify,
        }

    def _tokenize(self, premise, hypothesis):
        x = self.preprocessor(x=(premise, hypothesis))
        return {k: tf.cast(x[k], tf.int32) for k in self.id_inputs}

    def _encode(self, ids):
        x = {k: tf.cast(v, self.input_dtypes[k]) for k, v in ids.items()}
        logits = self.classifier(x, training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return probabilities, label

    def _outputs(self, ids):
        if self.jit_compile:
            probabilities, label = self._bucketed_encode(ids)
        else:
            probabilities, label = self._encode(ids)
        return {
            "probabilities": probabilities,
            "label": label,
            "label_name": tf.gather(self.labels, label),
        }

    def _bucketed_encode(self, ids):
        """``encode`` on the batch padded to a power of two rows (XLA compiles
        once per shape); the padding rows repeat the last row and are dropped."""
        rows = tf.shape(ids[self.id_inputs[0]])[0]
        bucket = _next_power_of_two(rows)
        take = tf.minimum(tf.range(bucket), rows - 1)
        probabilities, label = self.encode(
            {k: tf.gather(v, take) for k, v in ids.items()}
        )
        return probabilities[:rows], label[:rows]

    def _serve_text(self, premise, hypothesis):
        ids = self.tokenize(premise, hypothesis)
        if "padding_mask" in ids:
            # Length-aware: run the encoder on the batch's longest pair, not on
            # sequence_length. The packer pads at the end and attention masks
            # the padding, so outputs are unchanged (the export check compares
            # them with the fully padded in-memory model, atol 1e-5).
            ids, _ = trim_to_longest(ids, None, self.length_multiple)
        return self._outputs(ids)

    def _serve_token_ids(self, *ids):
        ids = dict(zip(self.id_inputs, ids, strict=True))
        if "padding_mask" in ids:
            # Clients pad as they like, so cut only the trailing columns that are
            # padding in every row (exact wherever the padding sits).
            used = tf.reduce_any(tf.not_equal(ids["padding_mask"], 0), axis=0)
            last = tf.argmax(
                tf.reverse(tf.cast(used, tf.int32), [0]), output_type=tf.int32
            )
            width = tf.shape(used)[0]
            length = tf.where(tf.reduce_any(used), width - last, width)
            if self.length_multiple > 1:
                multiple = tf.constant(self.length_multiple, tf.int32)
                length = tf.minimum(
                    (length + multiple - 1) // multiple * multiple, width
                )
            ids = {k: v[:, :length] for k, v in ids.items()}
        return self._outputs(ids)

    def _serve_classify(self, inputs):
        features = tf.io.parse_example(
            inputs,
            {n: tf.io.FixedLenFeature([], tf.string) for n in TEXT_INPUTS},
        )
        out = self.serve_text(features["premise"], features["hypothesis"])
        batch = tf.shape(inputs)[0]
        classes = tf.tile(self.labels[tf.newaxis, :], tf.stack([batch, 1]))
        return {"classes": classes, "scores": out["probabilities"]}


def _next_power_of_two(n):
    """The smallest power of two >= ``n`` (int32 tensor); 0 stays 0."""
    m = tf.maximum(n, 1) - 1
    for shift in (1, 2, 4, 8, 16):
        m = tf.bitwise.bitwise_or(m, tf.bitwise.right_shift(m, shift))
    return tf.where(n > 0, m + 1, 0)
