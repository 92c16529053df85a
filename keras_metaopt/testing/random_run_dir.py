"""A run directory with a random-weight classifier (tests, benchmarks)."""

import logging
from pathlib import Path

from keras_metaopt.formats import LABEL_NAMES as LABELS
from keras_metaopt.formats import MODEL_DIR, RATES_JSON
from keras_metaopt.rates_file import write_rates
from keras_metaopt.run_record import make_run_record, write_run_record
from keras_metaopt.testing.tiny_models import tiny_bert_backbone

log = logging.getLogger(__name__)

WORDS = tuple(
    (
        "the a an is are was not no cat cats dog dogs man woman men women child people "
        "sat sits on in under mat sofa park street animal animals plays playing music "
        "guitar walks walking runs running sleeps sleeping red blue green big small "
        "outside inside house car today yesterday two three happy sad eats food "
        "ο η το και δεν είναι γάτα σκύλος άνδρας γυναίκα "
        "یہ ایک ہے نہیں بلی کتا آدمی عورت"
    ).split()
)


class RandomRunDir:
    """Creates ``RUN/{model/,run.json,rates.json}`` with random weights.

    ``encoder="bert"`` builds a WordPiece ``BertTextClassifier``; ``"xlmr"`` builds
    a SentencePiece ``XLMRobertaTextClassifier`` (no ``segment_ids`` input, packs
    ``<s> A </s></s> B </s>``). Weights are drawn with unit-variance activations
    and the logits kernel is multiplied by ``logit_scale``, so that different
    pairs get clearly different probabilities.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     run = RandomRunDir(encoder="bert").write(f"{tmp}/run")
        ...     sorted(p.name for p in run.iterdir())
        ['model', 'rates.json', 'run.json']
        >>> big = RandomRunDir(num_layers=12, hidden_dim=384, num_heads=12,
        ...                    intermediate_dim=1536, vocabulary_size=250_037,
        ...                    sequence_length=128)
    """

    def __init__(
        self,
        encoder: str = "bert",
        num_layers: int = 2,
        num_heads: int = 2,
        hidden_dim: int = 16,
        intermediate_dim: int = 32,
        vocabulary_size: int | None = None,
        sequence_length: int = 32,
        max_sequence_length: int = 64,
        logit_scale: float = 3.0,
        seed: int = 0,
        with_rates: bool = True,
    ):
        if encoder not in ("bert", "xlmr"):
            raise ValueError(f"encoder must be 'bert' or 'xlmr'; got {encoder!r}")
        self.encoder = encoder
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.max_sequence_length = max_sequence_length
        self.logit_scale = logit_scale
        self.seed = seed
        self.with_rates = with_rates

    def _bert(self):
        import keras_hub

        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        letters = sorted(
            {c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz")
        )
        vocab += list(dict.fromkeys(WORDS + tuple(letters)))
        vocab += [f"##{c}" for c in letters] + [".", ",", "?", "!"]
        if self.vocabulary_size is not None:
            if self.vocabulary_size < len(vocab):
                raise ValueError(f"vocabulary_size must be >= {len(vocab)}")
            vocab += [f"tok{i}" for i in range(self.vocabulary_size - len(vocab))]
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
        backbone = tiny_bert_backbone(
            len(vocab),
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            max_sequence_length=self.max_sequence_length,
            dropout=0.1,  # keras-hub's default, as these run directories had
        )
        pre = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=self.sequence_length
        )
        return keras_hub.models.BertTextClassifier(
            backbone, num_classes=len(LABELS), preprocessor=pre, activation=None
        )

    def _xlmr(self):
        import io

        import keras_hub
        import sentencepiece

        corpus = [" ".join(WORDS[i : i + 7]) for i in range(0, len(WORDS), 3)]
        proto = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus * 4),
            model_writer=proto,
            vocab_size=self.vocabulary_size or 120,
            model_type="unigram",
            user_defined_symbols="<mask>",
            character_coverage=1.0,
            minloglevel=2,
        )
        tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=proto.getvalue())
        backbone = keras_hub.models.XLMRobertaBackbone(
            vocabulary_size=tokenizer.vocabulary_size(),
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            max_sequence_length=self.max_sequence_length,
        )
        pre = keras_hub.models.XLMRobertaTextClassifierPreprocessor(
            tokenizer, sequence_length=self.sequence_length
        )
        return keras_hub.models.XLMRobertaTextClassifier(
            backbone, num_classes=len(LABELS), preprocessor=pre, activation=None
        )

    def build_classifier(self):
        """Build the random classifier (not saved)."""
        import keras
        import numpy as np

        keras.utils.set_random_seed(self.seed)
        classifier = self._bert() if self.encoder == "bert" else self._xlmr()
        rng = np.random.default_rng(self.seed)
        for var in classifier.weights:
            path = var.path
            if "gamma" in path:
                value = np.ones(var.shape)
            elif "beta" in path or "bias" in path:
                value = np.zeros(var.shape)
            elif len(var.shape) >= 2 and "embedding" not in path:
                value = rng.normal(0.0, 1.0 / np.sqrt(var.shape[0]), size=var.shape)
                if path.startswith("logits/"):
                    value *= self.logit_scale
            else:
                value = rng.normal(0.0, 1.0, size=var.shape)
            var.assign(value.astype(var.dtype))
        return classifier

    def write(self, path) -> Path:
        """Build the classifier and write the run directory; returns its path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        classifier = self.build_classifier()
        classifier.save_to_preset(str(path / MODEL_DIR))
        run = make_run_record(
            method="meta" if self.with_rates else "baseline",
            preset=f"random-{self.encoder}-{self.num_layers}x{self.hidden_dim}",
            aux=["el", "ur"],
            sequence_length=self.sequence_length,
            seed=self.seed,
        )
        write_run_record(path, run)
        if self.with_rates:
            rates = {f"transformer_layer_{i}": 0.5 for i in range(self.num_layers)}
            rates = {k: round(0.4 + 0.05 * i, 4) for i, k in enumerate(rates)}
            rates["head"] = 0.55
            write_rates(
                path / RATES_JSON, rates, mode="layerwise", rates_param="sigmoid"
            )
        log.info("wrote random %s run to %s", self.encoder, path)
        return path
