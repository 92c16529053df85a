"""XLM-R SentencePiece tokenizer that tokenizes like Hugging Face `tokenizers`."""

import functools
import re

import keras
from keras_hub.models import XLMRobertaTokenizer

try:
    import tensorflow as tf
except ImportError:  # the Python (sentencepiece) path still works
    tf = None


@functools.lru_cache(maxsize=4)
def trailing_space_rule(proto):
    """`(pattern, space_piece_id)` for a SentencePiece ModelProto, or `None`.

    SentencePiece (`remove_extra_whitespaces`) drops whitespace at the end of
    the normalised text; Hugging Face `tokenizers` keeps it as a final `"▁"`
    piece. A text gets that piece iff its last character whose normalised form
    is non-empty normalises to something ending in a space: the returned
    regex, built from the proto's own normalisation rules, full-matches exactly
    those texts, in both RE2 (`tf.strings`) and Python `re` syntax.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    model.ParseFromString(proto)
    spec = model.normalizer_spec
    if not (spec.remove_extra_whitespaces and spec.escape_whitespaces):
        return None
    space_ids = [i for i, p in enumerate(model.pieces) if p.piece == "\u2581"]
    if not space_ids:
        return None
    rules = spm.SentencePieceNormalizer(model_proto=proto).Decompile()
    ends_in_space = {" "} | {s for s, t in rules if len(s) == 1 and t.endswith(" ")}
    deleted = {s for s, t in rules if len(s) == 1 and t == ""}
    for chars in (ends_in_space, deleted):
        if chars & set("]\\^-"):
            raise ValueError("unexpected regex metacharacter in normalisation rules")
    ws = "".join(sorted(ends_in_space))
    gone = "".join(sorted(deleted))
    pattern = f"(?s).*[{ws}]" + (f"[{gone}]*" if gone else "")
    return pattern, space_ids[0]


class _AppendTrailingSpaceTF:
    """Wraps `tf_text.SentencepieceTokenizer`: appends `"▁"` where HF would."""

    def __init__(self, inner, pattern, space_id):
        self._inner, self._pattern, self._space_id = inner, pattern, space_id

    def tokenize(self, inputs):
        tokens = self._inner.tokenize(inputs)
        flag = tf.expand_dims(tf.strings.regex_full_match(inputs, self._pattern), -1)
        space = "\u2581" if tokens.dtype == tf.string else self._space_id
        fill = tf.fill(tf.shape(flag), tf.constant(space, tokens.dtype))
        return tf.concat([tokens, tf.ragged.boolean_mask(fill, flag)], axis=-1)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _AppendTrailingSpaceSPM:
    """Wraps `sentencepiece.SentencePieceProcessor` the same way (eager path)."""

    def __init__(self, inner, pattern, space):
        self._inner, self._regex, self._space = inner, re.compile(pattern), space

    def Encode(self, inputs, **kwargs):  # noqa: N802 (sentencepiece's name)
        out = self._inner.Encode(inputs, **kwargs)
        if isinstance(inputs, str):
            return self._fix(inputs, out)
        return [self._fix(s, ids) for s, ids in zip(inputs, out, strict=True)]

    def _fix(self, text, ids):
        return list(ids) + [self._space] if self._regex.fullmatch(text) else ids

    def __getattr__(self, name):
        return getattr(self._inner, name)


@keras.saving.register_keras_serializable(package="keras_metaopt")
class E5Tokenizer(XLMRobertaTokenizer):
    """`XLMRobertaTokenizer` that matches Hugging Face `tokenizers` exactly.

    multilingual-e5 was trained with the HF fast XLM-R tokenizer, which keeps
    trailing whitespace as a final `"▁"` token (id 6) where SentencePiece drops
    it; otherwise the two agree. This subclass appends that token, in the TF
    graph (`tf.data`, `tf.function`) and on the eager (sentencepiece) path
    alike. Everything else, config and assets included, is `XLMRobertaTokenizer`.
    (In the graph, tensorflow-text's SentencePiece breaks exact ties of the
    unigram model, equal-score segmentations that only order the same pieces
    differently, unlike HF: 2 of 49,797 XNLI dev sentences.)

    Usage (needs the preset that `python -m tools.import_e5_small` writes):

        tok = E5Tokenizer(proto="presets/multilingual_e5_small/assets/"
                                "tokenizer/vocabulary.spm")
        tok(["Hello world", "Hello world "])  # [[35378, 8999], [35378, 8999, 6]]
    """

    def _set_proto_tf(self, proto):
        if self.add_bos or self.add_eos:
            raise ValueError("E5Tokenizer does not support add_bos/add_eos")
        super()._set_proto_tf(proto)
        rule = trailing_space_rule(proto)
        if rule is not None:
            self._sentence_piece = _AppendTrailingSpaceTF(self._sentence_piece, *rule)

    def _set_proto_spm(self, proto):
        super()._set_proto_spm(proto)
        rule = trailing_space_rule(proto)
        if rule is not None:
            pattern, space_id = rule
            inner = self._sentence_piece_spm
            as_piece = "string" in str(self.compute_dtype)
            space = inner.IdToPiece(space_id) if as_piece else space_id
            self._sentence_piece_spm = _AppendTrailingSpaceSPM(inner, pattern, space)
