"""Export a trained run as a versioned, verified TF Serving SavedModel."""

import datetime
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from serving.export.export_error import ExportError
from serving.export.precision import DEFAULT_ATOL, DEFAULT_FLOAT32_ATOL, PRECISIONS
from serving.export.run_dir import RunDir
from serving.export.serving_module import ServingModule
from serving.saved_model_layout import (
    ASSETS_EXTRA,
    CLASSIFY_METHOD,
    CLASSIFY_SIGNATURE,
    METADATA_FILE,
    METADATA_FORMAT,
    PREDICT_SIGNATURE,
    TEXT_INPUTS,
    TOKEN_IDS_SIGNATURE,
    WARMUP_FILE,
)

log = logging.getLogger(__name__)

# With --jit-compile, lengths are rounded up to a multiple of this (XLA compiles
# once per shape); 8 keeps the padding small (BENCHMARKS.md).
DEFAULT_JIT_LENGTH_MULTIPLE = 8

CHECK_PAIRS = (
    ("A man is playing a guitar.", "A man is playing music."),
    ("The cat sleeps on the sofa.", "A dog is running in the park."),
    ("Two women are walking outside.", "Nobody is outside."),
    ("Ένας άνδρας παίζει κιθάρα.", "Ο άνδρας δεν παίζει μουσική."),
    ("ایک آدمی گٹار بجا رہا ہے۔", "یہ آدمی موسیقی نہیں بجا رہا ہے۔"),
    ("Ein Mann spielt Gitarre.", "那个人在弹吉他。"),
    ("", ""),
    (" ".join(["the cat sat on the mat"] * 120), "A cat sat."),
)


def parse_version_dir(out) -> tuple[Path, int]:
    """Split ``MODEL_BASE/VERSION`` into the base path and the integer version.

    >>> parse_version_dir("models/nli/3")
    (PosixPath('models/nli'), 3)
    """
    out = Path(out)
    if not out.name.isdigit() or not out.name.isascii():
        raise ValueError(
            f"the version directory must be an integer (TF Serving's "
            f"MODEL_BASE/VERSION layout, e.g. models/nli/1); got {out.name!r} "
            f"in --out {str(out)!r}"
        )
    return out.parent, int(out.name)


class Exporter:
    """Writes ``MODEL_BASE/VERSION`` from a run directory and checks it.

    The SavedModel is written under a hidden temporary name next to the target,
    reloaded with ``tf.saved_model.load`` and compared with the in-memory model on
    the check pairs (tokens must match exactly, probabilities within ``atol``,
    by default ``DEFAULT_ATOL[precision]``; a bfloat16 export is also compared
    with the run's model computed in float32, within ``float32_atol``);
    only then is it renamed into place, so a polling server never sees a
    half-written or unverified version.

    Usage (needs a trained run):

        Exporter("runs/meta", "models/nli/1").export()  # PosixPath('models/nli/1')
    """

    def __init__(
        self,
        run_dir,
        out,
        model_name: str = "nli",
        atol: float | None = None,
        check_pairs: list[tuple[str, str]] | None = None,
        jit_compile: bool = False,
        length_multiple: int | None = None,
        precision: str = "float32",
        float32_atol: float = DEFAULT_FLOAT32_ATOL,
    ):
        if precision not in PRECISIONS:
            raise ValueError(
                f"precision {precision!r}: an export computes in one of "
                f"{', '.join(PRECISIONS)}"
            )
        if length_multiple is None:
            length_multiple = DEFAULT_JIT_LENGTH_MULTIPLE if jit_compile else 1
        if length_multiple < 1:
            raise ValueError(
                f"the length multiple must be an integer >= 1, got {length_multiple}"
            )
        self.jit_compile = bool(jit_compile)
        self.length_multiple = int(length_multiple)
        self.precision = precision
        self.float32_atol = float32_atol
        self.run = RunDir(run_dir)
        self.out = Path(out)
        self.base, self.version = parse_version_dir(self.out)
        self.model_name = model_name
        self.atol = DEFAULT_ATOL[precision] if atol is None else atol
        self.check_pairs = list(CHECK_PAIRS) + list(check_pairs or [])
        self.report: dict = {}

    def export(self) -> Path:
        """Export, verify and move into place; returns the version directory."""
        import tensorflow_text  # noqa: F401  (registers the tf-text ops)

        if self.out.exists():
            raise ValueError(
                f"{self.out} already exists; versions are immutable, export to a "
                "new version number"
            )
        created_base = not self.base.exists()
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            return self._export()
        except BaseException:
            if created_base and not any(self.base.iterdir()):
                self.base.rmdir()  # a failed export leaves no empty MODEL_BASE
            raise

    def _export(self) -> Path:
        import tensorflow as tf

        log.info("loading classifier from %s (%s)", self.run.model_path, self.precision)
        classifier = self.run.load_classifier(dtype=self.precision)
        metadata = self._metadata(classifier)
        module = ServingModule(
            classifier,
            self.run.labels,
            json.dumps(metadata),
            jit_compile=self.jit_compile,
            length_multiple=self.length_multiple,
        )
        tmp = self.base / f".tmp-export-{self.version}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            log.info("writing SavedModel to %s", tmp)
            tf.saved_model.save(module, str(tmp), signatures=module.signatures())
            self._mark_classify_signature(tmp)
            extra = tmp / ASSETS_EXTRA
            extra.mkdir()
            (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
            self._write_warmup(extra / WARMUP_FILE, classifier)
            log.info("checking the reloaded SavedModel against the in-memory model")
            self.verify(tmp, classifier, metadata)
            os.rename(tmp, self.out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("exported %s (max abs diff %.2e)", self.out, self.report["max_diff"])
        return self.out

    def _metadata(self, classifier) -> dict:
        import keras
        import keras_hub
        import tensorflow as tf
        import tensorflow_text

        backbone = classifier.backbone
        config = backbone.get_config()
        pre = classifier.preprocessor
        limits = {"token_ids": int(config["vocabulary_size"])}
        if "num_segments" in config:
            limits["segment_ids"] = int(config["num_segments"])
        limits["padding_mask"] = 2
        inputs = [k for k in ("token_ids", "segment_ids", "padding_mask")]
        inputs = [k for k in inputs if k in backbone.input]
        return {
            "format": METADATA_FORMAT,
            "model_name": self.model_name,
            "version": self.version,
            **self.run.metadata(),
            "encoder": {
                "backbone_class": type(backbone).__name__,
                "classifier_class": type(classifier).__name__,
                "preprocessor_class": type(pre).__name__,
                "tokenizer_class": type(pre.tokenizer).__name__,
                "num_layers": config.get("num_layers"),
                "hidden_dim": config.get("hidden_dim"),
                "vocabulary_size": int(config["vocabulary_size"]),
                "token_id_inputs": inputs,
                "input_limits": {k: v for k, v in limits.items() if k in inputs},
            },
            "signatures": {
                PREDICT_SIGNATURE: "premise, hypothesis -> probabilities, label, "
                "label_name",
                TOKEN_IDS_SIGNATURE: ", ".join(inputs) + " -> probabilities, label, "
                "label_name",
                CLASSIFY_SIGNATURE: "tf.Example(premise, hypothesis) -> classes, "
                "scores",
            },
            "inference": {
                "precision": self.precision,
                "jit_compile": self.jit_compile,
                "length_multiple": self.length_multiple,
                "batch_bucketing": "power_of_two" if self.jit_compile else "none",
            },
            "versions": {
                "tensorflow": tf.__version__,
                "tensorflow_text": tensorflow_text.__version__,
                "keras": keras.__version__,
                "keras_hub": keras_hub.__version__,
            },
            "exported_at": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
            "run_dir": str(self.run.path.resolve()),
        }

    @staticmethod
    def _mark_classify_signature(path: Path) -> None:
        """Set the ``classify`` signature's method name to the Classify API's.

        ``tf.saved_model.save`` marks every signature as a predict signature;
        TF Serving (with ``--enable_signature_method_name_check``) wants
        ``tensorflow/serving/classify`` for the Classify API.
        """
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.saved_model import fingerprinting_utils

        pb = path / "saved_model.pb"
        saved = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
        for meta_graph in saved.meta_graphs:
            meta_graph.signature_def[CLASSIFY_SIGNATURE].method_name = CLASSIFY_METHOD
        pb.write_bytes(saved.SerializeToString(deterministic=True))
        (path / "fingerprint.pb").unlink(missing_ok=True)
        fingerprinting_utils.write_fingerprint(str(path))

    def _reference(self, classifier, premises, hypotheses):
        """Token ids (Python-path preprocessing) and probabilities, in memory."""
        import tensorflow as tf

        x = classifier.preprocessor(x=(premises, hypotheses))
        ids = {k: np.asarray(x[k]).astype(np.int32) for k in classifier.backbone.input}
        logits = classifier(x, training=False)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
        return ids, probs

    def _write_warmup(self, path: Path, classifier) -> None:
        import tensorflow as tf
        from tensorflow_serving.apis import (
            classification_pb2,
            predict_pb2,
            prediction_log_pb2,
        )

        pairs = self.check_pairs[:4]
        records = []
        for n in (1, 4):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = self.model_name
            req.model_spec.signature_name = PREDICT_SIGNATURE
            for i, name in enumerate(TEXT_INPUTS):
                values = np.array([p[i].encode() for p in pairs[:n]], dtype=object)
                req.inputs[name].CopyFrom(tf.make_tensor_proto(values))
            records.append(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=req)
                )
            )
        ids, _ = self._reference(classifier, [pairs[0][0]], [pairs[0][1]])
        req = predict_pb2.PredictRequest()
        req.model_spec.name = self.model_name
        req.model_spec.signature_name = TOKEN_IDS_SIGNATURE
        for name, value in ids.items():
            req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        records.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=req)
            )
        )
        if self.jit_compile:
            # XLA compiles once per shape: one single-row request per length
            # bucket, so that no live request waits for a compilation.
            width = classifier.preprocessor.sequence_length
            lengths = list(range(self.length_multiple, width + 1, self.length_multiple))
            if width % self.length_multiple:
                lengths.append(width)
            for length in lengths:
                req = predict_pb2.PredictRequest()
                req.model_spec.name = self.model_name
                req.model_spec.signature_name = TOKEN_IDS_SIGNATURE
                # Shapes are all that matter: the first token repeated, all real.
                fill = {"token_ids": ids["token_ids"][0, 0], "padding_mask": 1}
                for name, value in ids.items():
                    row = np.zeros_like(value)
                    row[:, :length] = fill.get(name, 0)
                    req.inputs[name].CopyFrom(tf.make_tensor_proto(row))
                records.append(
                    prediction_log_pb2.PredictionLog(
                        predict_log=prediction_log_pb2.PredictLog(request=req)
                    )
                )
        creq = classification_pb2.ClassificationRequest()
        creq.model_spec.name = self.model_name
        creq.model_spec.signature_name = CLASSIFY_SIGNATURE
        example = creq.input.example_list.examples.add()
        example.features.feature["premise"].bytes_list.value.append(
            pairs[0][0].encode()
        )
        example.features.feature["hypothesis"].bytes_list.value.append(
            pairs[0][1].encode()
        )
        records.append(
            prediction_log_pb2.PredictionLog(
                classify_log=prediction_log_pb2.ClassifyLog(request=creq)
            )
        )
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record.SerializeToString())

    def verify(self, path, classifier, metadata: dict) -> dict:
        """Reload ``path`` and compare every signature with the in-memory model.

        Raises ExportError naming the first mismatch; returns a report dict.
        """
        import tensorflow as tf
        import tensorflow_text  # noqa: F401
        from tensorflow_serving.apis import prediction_log_pb2

        premises = [p for p, _ in self.check_pairs]
        hypotheses = [h for _, h in self.check_pairs]
        ids, probs = self._reference(classifier, premises, hypotheses)
        loaded = tf.saved_model.load(str(path))
        p_t, h_t = tf.constant(premises), tf.constant(hypotheses)

        graph_ids = {k: v.numpy() for k, v in loaded.tokenize(p_t, h_t).items()}
        for name, want in ids.items():
            bad = np.flatnonzero((graph_ids[name] != want).any(axis=1))
            if bad.size:
                i = int(bad[0])
                raise ExportError(
                    f"in-graph tokenization differs from the in-memory preprocessor "
                    f"for {name} of pair {i} {self.check_pairs[i]!r}:\n"
                    f"  graph:     {graph_ids[name][i].tolist()}\n"
                    f"  in-memory: {want[i].tolist()}"
                )

        diffs = {}
        labels = np.array(self.run.labels)
        out = loaded.signatures[PREDICT_SIGNATURE](premise=p_t, hypothesis=h_t)
        diffs[PREDICT_SIGNATURE] = self._compare(PREDICT_SIGNATURE, out, probs, labels)
        out = loaded.signatures[TOKEN_IDS_SIGNATURE](
            **{k: tf.constant(v) for k, v in ids.items()}
        )
        diffs[TOKEN_IDS_SIGNATURE] = self._compare(
            TOKEN_IDS_SIGNATURE, out, probs, labels
        )
        examples = []
        for premise, hypothesis in self.check_pairs:
            feature = {
                "premise": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[premise.encode()])
                ),
                "hypothesis": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[hypothesis.encode()])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            examples.append(example.SerializeToString())
        out = loaded.signatures[CLASSIFY_SIGNATURE](inputs=tf.constant(examples))
        scores = out["scores"].numpy()
        diffs[CLASSIFY_SIGNATURE] = float(np.max(np.abs(scores - probs)))
        classes = out["classes"].numpy().astype(str)
        if not (classes == labels[np.newaxis, :]).all():
            raise ExportError(f"classify returned classes {classes[0].tolist()}")
        if diffs[CLASSIFY_SIGNATURE] > self.atol:
            raise ExportError(
                f"classify scores differ from the in-memory model by "
                f"{diffs[CLASSIFY_SIGNATURE]:.3g} > atol {self.atol:g}"
            )
        if json.loads(loaded.metadata_json.numpy().decode()) != metadata:
            raise ExportError("metadata_json in the graph differs from the metadata")
        float32 = {}
        if self.precision != "float32":
            float32 = self._compare_with_float32(probs)

        warmup = Path(path) / ASSETS_EXTRA / WARMUP_FILE
        count = 0
        for raw in tf.data.TFRecordDataset(str(warmup)).as_numpy_iterator():
            prediction_log_pb2.PredictionLog.FromString(raw)
            count += 1
        self.report = {
            "pairs": len(self.check_pairs),
            "max_diff": max(diffs.values()),
            "diffs": diffs,
            "warmup_records": count,
            **float32,
        }
        log.info("export check passed: %s", self.report)
        return self.report

    def _compare_with_float32(self, probs) -> dict:
        """How far the export's in-memory model (``probs``, computed in
        ``self.precision``) is from the run's model computed in float32 on the
        check pairs; raises ExportError beyond ``float32_atol``."""
        premises = [p for p, _ in self.check_pairs]
        hypotheses = [h for _, h in self.check_pairs]
        _, want = self._reference(
            self.run.load_classifier(dtype="float32"), premises, hypotheses
        )
        diff = self._check_close(
            self.precision,
            (self.precision, probs),
            ("the float32 model", want),
            f"--float32-atol {self.float32_atol:g}",
            self.float32_atol,
        )
        return {
            "float32_max_diff": float(diff.max()),
            "float32_label_agreement": float(
                np.mean(probs.argmax(axis=1) == want.argmax(axis=1))
            ),
        }

    def _check_close(self, name, got, want, limit_text, limit):
        """Per check pair, the largest difference of the probabilities
        `got = (what, array)` and `want = (what, array)`; ExportError naming the
        worst pair when it is above `limit`."""
        diff = np.abs(got[1] - want[1]).max(axis=1)
        if diff.max() > limit:
            i = int(diff.argmax())
            raise ExportError(
                f"{name}: probabilities of pair {i} {self.check_pairs[i]!r} differ "
                f"from {want[0]} by {diff[i]:.3g} > {limit_text}:\n"
                f"  {got[0]}: {got[1][i].tolist()}\n"
                f"  {want[0]}: {want[1][i].tolist()}"
            )
        return diff

    def _compare(self, name, out, probs, labels) -> float:
        got = out["probabilities"].numpy()
        if got.shape != probs.shape or got.dtype != np.float32:
            raise ExportError(f"{name}: probabilities {got.dtype}{got.shape}")
        diff = self._check_close(
            name,
            ("reloaded", got),
            ("the in-memory model", probs),
            f"atol {self.atol:g}",
            self.atol,
        )
        label = out["label"].numpy()
        if not (label == got.argmax(axis=1)).all():
            raise ExportError(f"{name}: label is not the argmax of probabilities")
        names = out["label_name"].numpy().astype(str)
        if not (names == labels[label]).all():
            raise ExportError(f"{name}: label_name does not match label")
        return float(diff.max())
