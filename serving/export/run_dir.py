"""Read a trained run directory (model preset, run.json, rates.json)."""

from pathlib import Path

from keras_metaopt.formats import LABEL_NAMES as LABELS
from keras_metaopt.formats import (
    MODEL_DIR,
    RATES_JSON,
    RUN_JSON,
)
from keras_metaopt.rates_file import read_rates
from keras_metaopt.run_record import read_run_record, unfinished_run


class RunDir:
    """A trained run: ``model/`` (keras-hub preset), ``run.json``, ``rates.json``.

    ``rates.json`` is optional (baseline runs have none). Everything is validated on
    construction so that a broken run fails before any export work starts; the
    classifier itself is loaded lazily by :meth:`load_classifier`.

    Usage (needs a trained run):

        run = RunDir("runs/meta-en-el-ur")
        run.labels, run.sequence_length
        # (['entailment', 'neutral', 'contradiction'], 128)
        classifier = run.load_classifier()
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"run directory {self.path} does not exist")
        self.model_path = self.path / MODEL_DIR
        if not (self.model_path / "config.json").is_file():
            unfinished = unfinished_run(self.path, f"{MODEL_DIR}/ (its final model)")
            if unfinished:
                raise ValueError(f"{unfinished}; then export it")
            raise ValueError(
                f"{self.model_path} is not a keras-hub preset (no config.json); "
                f"expected classifier.save_to_preset(RUN/'{MODEL_DIR}')"
            )
        self.run = read_run_record(self.path)
        self.labels = list(self.run.get("labels", LABELS))
        if tuple(self.labels) != LABELS:
            raise ValueError(
                f"{self.path / RUN_JSON}: labels must be {list(LABELS)} in this "
                f"order; got {self.labels}"
            )
        self.sequence_length = self.run.get("sequence_length")
        self.rates = None
        self.rates_mode = None
        rates_path = self.path / RATES_JSON
        if rates_path.exists():
            rates = read_rates(rates_path)
            self.rates = rates.rates
            self.rates_mode = rates.mode

    def load_classifier(self, dtype=None):
        """Load the keras-hub ``TextClassifier`` (with its preprocessor) from the run.

        ``dtype``: a Keras dtype policy name for the layers (e.g.
        ``"mixed_bfloat16"``; the weights stay float32); None: the preset's.

        Raises ValueError when the preset has no preprocessor or when its
        ``sequence_length`` differs from the one recorded in ``run.json``.
        """
        from keras_metaopt.models import load_classifier

        classifier = load_classifier(
            self.model_path, **({"dtype": dtype} if dtype else {})
        )
        pre = classifier.preprocessor
        if pre is None:
            raise ValueError(f"{self.model_path} holds no preprocessor")
        if self.sequence_length is not None and pre.sequence_length != int(
            self.sequence_length
        ):
            raise ValueError(
                f"run.json says sequence_length={self.sequence_length} but the "
                f"preset's preprocessor packs to {pre.sequence_length}"
            )
        self.sequence_length = int(pre.sequence_length)
        return classifier

    def metadata(self) -> dict:
        """The run facts that travel with an export (no weights, no code)."""
        return {
            "preset": self.run.get("preset"),
            "method": self.run.get("method"),
            "train_languages": list(self.run.get("train_languages", [])),
            "labels": list(self.labels),
            "sequence_length": self.sequence_length,
            "seed": self.run.get("seed"),
            "rates_mode": self.rates_mode,
            "rates": self.rates,
        }
