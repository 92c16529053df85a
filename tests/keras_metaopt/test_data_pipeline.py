"""Tests of the tf.data pipeline: packing, dynamic padding, bucketing, shuffling.

Packing, padding and bucketing use real keras-hub preprocessors built from tiny
generated vocabularies. Order-only tests (shuffle, repeat, mixing) use a cheap
stand-in preprocessor, because tracing a keras-hub preprocessor takes seconds.
"""

import io

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import data

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB += ["the", "cat", "sat", "a", "dog", "ran", ".", '"', "on", "mat", "red"]


def bert_preprocessor(sequence_length=32):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )


def index_preprocessor(x):
    """Stand-in: premise 'i' -> token_ids [i, i], no padding."""
    premise, _ = x
    ids = tf.strings.to_number(premise, tf.int32)
    token_ids = tf.stack([ids, ids], axis=1)
    return {"token_ids": token_ids, "padding_mask": tf.ones_like(token_ids, tf.bool)}


def pairs_of(premises, hypotheses, labels=None, lang="en"):
    labels = labels if labels is not None else [i % 3 for i in range(len(premises))]
    return data.NliPairs(list(premises), list(hypotheses), list(labels), lang, "test")


def numbered(n, start=0, label=None, lang="en"):
    """Pairs whose premises are the row numbers start..start+n-1."""
    labels = [label] * n if label is not None else None
    return pairs_of([str(start + i) for i in range(n)], ["h"] * n, labels, lang)


def decode(ids):
    return " ".join(VOCAB[i] for i in ids)


def batches(ds):
    return [({k: v.numpy() for k, v in x.items()}, y.numpy()) for x, y in ds]


def order(ds):
    """Row numbers in the order the dataset yields them."""
    return [int(i) for f, _ in batches(ds) for i in f["token_ids"][:, 0]]


def test_bert_packing_truncation_and_trimming():
    pairs = pairs_of(
        ["The cat", '"A dog', "the cat sat on the mat"],
        ["a dog ran .", "the", "a red dog ran on the mat"],
        labels=[0, 2, 1],
    )
    ds = data.make_dataset(pairs, bert_preprocessor(9), 3)
    [(features, labels)] = batches(ds)
    assert sorted(features) == ["padding_mask", "segment_ids", "token_ids"]
    assert labels.dtype == np.int32 and labels.tolist() == [0, 2, 1]
    ids = features["token_ids"]
    assert ids.dtype == np.int32 and ids.shape == (3, 9)
    assert decode(ids[0]) == "[CLS] the cat [SEP] a dog ran . [SEP]"
    assert decode(ids[1]) == '[CLS] " a dog [SEP] the [SEP] [PAD] [PAD]'
    # Too long: both segments are truncated (round robin), both [SEP]s kept.
    assert decode(ids[2]) == "[CLS] the cat sat [SEP] a red dog [SEP]"
    assert features["segment_ids"].tolist() == [
        [0, 0, 0, 0, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 1, 1, 1],
    ]
    assert features["padding_mask"].sum(axis=1).tolist() == [9, 7, 9]


def test_xlm_roberta_packing_has_double_separator():
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["the cat sat on the mat", "a dog ran"]),
        model_writer=model,
        vocab_size=11,
        model_type="WORD",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
    )
    tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=model.getvalue())
    pre = keras_hub.models.XLMRobertaTextClassifierPreprocessor(
        tokenizer, sequence_length=16
    )
    [(features, _)] = batches(
        data.make_dataset(pairs_of(["the cat"], ["a dog ran"]), pre, 1)
    )
    assert sorted(features) == ["padding_mask", "token_ids"]
    tokens = [tokenizer.id_to_token(int(i)) for i in features["token_ids"][0]]
    assert tokens == [
        "<s>", "▁the", "▁cat", "</s>", "</s>", "▁a", "▁dog", "▁ran", "</s>",
    ]  # fmt: skip


def test_dynamic_padding_trims_each_batch_to_its_longest_sequence():
    premises = ["the", "the cat", "the cat sat on the mat", "a", "a dog"]
    pairs = pairs_of(premises, ["."] * 5)
    pre = bert_preprocessor(32)
    ds = data.make_dataset(pairs, pre, 2)
    assert ds.element_spec[0]["token_ids"].shape.as_list() == [None, None]
    # Real lengths: [CLS] premise [SEP] . [SEP] = len(premise) + 4.
    out = batches(ds)
    assert [f["token_ids"].shape for f, _ in out] == [(2, 6), (2, 10), (1, 6)]
    for features, _ in out:
        assert {f.shape for f in features.values()} == {features["token_ids"].shape}
        assert features["padding_mask"][:, -1].any()  # Nothing left to trim.
    assert decode(out[1][0]["token_ids"][1]) == "[CLS] a [SEP] . [SEP] " + " ".join(
        ["[PAD]"] * 5
    )
    full = data.make_dataset(pairs, pre, 2, dynamic_padding=False)
    assert [f["token_ids"].shape[1] for f, _ in batches(full)] == [32, 32, 32]


def test_trim_to_longest_rounds_up_and_caps():
    mask = tf.constant([[True] * 5 + [False] * 6, [True] * 3 + [False] * 8])
    features = {"token_ids": tf.ones([2, 11], tf.int32), "padding_mask": mask}
    labels = tf.constant([0, 1])

    def width(multiple):
        trimmed, out_labels = data.trim_to_longest(features, labels, multiple)
        assert out_labels is labels
        assert trimmed["token_ids"].shape == trimmed["padding_mask"].shape
        return trimmed["token_ids"].shape[1]

    assert [width(1), width(4), width(8), width(16)] == [5, 8, 8, 11]
    empty = {"token_ids": tf.ones([0, 11], tf.int32), "padding_mask": mask[:0]}
    assert data.trim_to_longest(empty, None)[0]["token_ids"].shape == (0, 1)


def test_length_bucketing_groups_similar_lengths():
    lengths = [1, 6, 2, 5, 1, 6, 2, 5, 3, 4, 3, 4]  # Premise word counts.
    premises = [" ".join(["cat"] * n) for n in lengths]
    pairs = pairs_of(premises, ["."] * len(lengths))
    ds = data.make_dataset(pairs, bert_preprocessor(), 2, bucket_boundaries=[8, 10])
    seen = []
    for features, labels in batches(ds):
        real = features["padding_mask"].sum(axis=1)
        assert len(labels) == 2
        assert len({np.searchsorted([8, 10], n, side="right") for n in real}) == 1
        assert features["token_ids"].shape[1] == real.max()
        seen += real.tolist()
    assert sorted(seen) == sorted(n + 4 for n in lengths)


def length_preprocessor(x):
    """Stand-in: premise 'i' -> i repeated i % 13 + 1 times, padded to 16."""
    premise, _ = x
    ids = tf.strings.to_number(premise, tf.int32)
    mask = tf.sequence_mask(ids % 13 + 1, 16)
    return {"token_ids": tf.where(mask, ids[:, None], 0), "padding_mask": mask}


def grouped(n, skip=0, seed=0, **kwargs):
    grouping = {"seed": seed, "mega_batches": 4, "skip": skip}
    return batches(
        data.make_dataset(
            numbered(n),
            length_preprocessor,
            3,
            length_grouping=grouping,
            pad_to_multiple_of=8,
            **kwargs,
        )
    )


def test_group_by_length_batches_similar_lengths_from_each_mega_batch():
    # 2 mega-batches of 4 batches of 3, and 6 rows: 2 whole batches, or none.
    out = grouped(30)
    assert len(out) == 10 and len(grouped(30, drop_remainder=True)) == 8
    rest = sorted(int(i) for f, _ in out[8:] for i in f["token_ids"][:, 0])
    assert rest == list(range(24, 30))
    out = out[:8]
    for start, mega in ((0, out[:4]), (12, out[4:])):
        rows = sorted(int(i) for f, _ in mega for i in f["token_ids"][:, 0])
        assert rows == list(range(start, start + 12))  # each row once, no mixing
        lengths = sorted(n for f, _ in mega for n in f["padding_mask"].sum(1))
        # Batches cut from the sorted mega-batch: each holds 3 neighbours.
        for features, labels in mega:
            real = sorted(features["padding_mask"].sum(axis=1))
            i = lengths.index(real[0])
            assert real == lengths[i : i + 3], (real, lengths)
            assert len(labels) == 3
            # Padded to the longest real length, rounded up to 8 (of 16 in all).
            assert features["token_ids"].shape[1] == min(16, -(-max(real) // 8) * 8)


def test_group_by_length_is_seeded_and_a_skip_resumes_the_same_stream():
    def rows(out):
        return [f["token_ids"][:, 0].tolist() for f, _ in out]

    full = rows(grouped(36, seed=5))
    assert rows(grouped(36, seed=5)) == full
    assert rows(grouped(36, seed=6)) != full  # batch order within mega-batches
    assert sorted(map(sorted, rows(grouped(36, seed=6)))) == sorted(map(sorted, full))
    for skip in (1, 4, 6, 9):  # within the first, at and across boundaries
        assert rows(grouped(36, skip=skip, seed=5)) == full[skip:], skip
    with pytest.raises(ValueError, match="not both"):
        data.make_dataset(
            numbered(3),
            length_preprocessor,
            3,
            length_grouping={},
            bucket_boundaries=[4],
        )


def test_seeded_shuffle_is_reproducible():
    pairs, pre = numbered(40), index_preprocessor
    in_file_order = list(range(40))
    assert order(data.make_dataset(pairs, pre, 8)) == in_file_order
    two_epochs = order(data.make_dataset(pairs, pre, 8, shuffle=True, seed=3, repeat=2))
    first = order(data.make_dataset(pairs, pre, 8, shuffle=True, seed=3))
    other = order(data.make_dataset(pairs, pre, 8, shuffle=True, seed=4))
    assert two_epochs[:40] == first  # Same seed, same order.
    assert sorted(first) == sorted(other) == in_file_order
    assert first != in_file_order and other != first
    assert two_epochs[40:] != first  # Reshuffled each epoch ...
    assert sorted(two_epochs[40:]) == in_file_order  # ... each a permutation.


def test_repeat_and_drop_remainder():
    pairs, pre = numbered(10), index_preprocessor
    sizes = [len(y) for _, y in batches(data.make_dataset(pairs, pre, 4))]
    assert sizes == [4, 4, 2]
    forever = data.make_dataset(pairs, pre, 4, repeat=True, drop_remainder=True)
    assert forever.cardinality() == tf.data.INFINITE_CARDINALITY
    assert forever.element_spec[1].shape.as_list() == [4]
    assert forever.element_spec[0]["token_ids"].shape.as_list() == [4, None]
    # Epochs run on: 10 rows -> batches of rows 0-3, 4-7, 8-9+0-1, 2-5, ...
    assert order(forever.take(3)) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    twice = data.make_dataset(pairs, pre, 4, repeat=2, drop_remainder=True)
    assert [len(y) for _, y in batches(twice)] == [4] * 5


def labels_of(ds):
    return [int(y) for _, y in ds]


def test_mix_languages_uniform_proportional_and_seeded():
    en, de = numbered(300, label=0, lang="en"), numbered(100, label=2, lang="de")
    uniform = labels_of(data.mix_languages({"en": en, "de": de}, seed=1).take(200))
    assert uniform == labels_of(
        data.mix_languages({"en": en, "de": de}, seed=1).take(200)
    )
    assert uniform != labels_of(
        data.mix_languages({"en": en, "de": de}, seed=2).take(200)
    )
    assert 70 <= uniform.count(0) <= 130
    prop = data.mix_languages({"en": en, "de": de}, sampling="proportional", seed=1)
    assert 125 <= labels_of(prop.take(200)).count(0) <= 175  # Weights .75 / .25.
    sized = data.mix_languages(
        [en, de], sampling="proportional", sizes=[1, 9], seed=1
    ).take(200)
    assert 5 <= labels_of(sized).count(0) <= 35  # Weights .1 / .9.
    # The mixture stops when a language runs out, keeping the ratio honest.
    short = numbered(5, label=1, lang="sw")
    mixed = labels_of(data.mix_languages([short, de], seed=0))
    assert mixed.count(1) == 5 and len(mixed) < 105
    with pytest.raises(ValueError, match="positive, finite size"):
        data.mix_languages(
            [data.pairs_to_dataset(en).repeat(), de], sampling="proportional"
        )
    with pytest.raises(ValueError, match="sampling must be"):
        data.mix_languages([en], sampling="size")


def test_mixed_raw_dataset_feeds_the_pipeline():
    en = numbered(6, start=0, label=0, lang="en")
    de = numbered(6, start=100, label=2, lang="de")
    mixed = data.mix_languages({"en": en, "de": de}, seed=0)
    ds = data.make_dataset(mixed, index_preprocessor, 4, shuffle=True, seed=0)
    rows = order(ds)
    assert rows == order(
        data.make_dataset(
            data.mix_languages({"en": en, "de": de}, seed=0),
            index_preprocessor,
            4,
            shuffle=True,
            seed=0,
        )
    )
    assert len(rows) == len(set(rows)) >= 7
    assert set(rows) <= set(range(6)) | set(range(100, 106))


def test_pipeline_input_errors():
    pre = index_preprocessor
    with pytest.raises(ValueError, match=r"raw elements"):
        data.make_dataset(tf.data.Dataset.range(3), pre, 2)
    with pytest.raises(TypeError, match="expected NliPairs"):
        data.make_dataset([("p", "h", 0)], pre, 2)

    def token_ids_only(x):
        return {"token_ids": pre(x)["token_ids"]}

    pairs = numbered(2)
    with pytest.raises(ValueError, match="need a 'padding_mask'"):
        data.make_dataset(pairs, token_ids_only, 2)
    with pytest.raises(ValueError, match="must return a dict of features"):
        data.make_dataset(pairs, lambda x: x, 2)
    ds = data.make_dataset(pairs, token_ids_only, 2, dynamic_padding=False)
    assert batches(ds)[0][0]["token_ids"].tolist() == [[0, 0], [1, 1]]


def test_a_preprocessor_is_traced_once_per_sequence_length():
    # tf.data traces every map's function anew; the keras-hub preprocessor in
    # it is traced once per (preprocessor, sequence length) and reused.
    pre = bert_preprocessor(sequence_length=16)
    traced = []
    call = pre.call

    def counting(*args, **kwargs):  # its Python body runs only when traced
        traced.append(pre.sequence_length)
        return call(*args, **kwargs)

    pre.call = counting
    pairs = pairs_of(["the cat sat on the mat ."] * 5, ["a dog ran"] * 5)
    first = batches(data.make_dataset(pairs, pre, 2, dynamic_padding=False))
    again = batches(data.make_dataset(pairs, pre, 2, dynamic_padding=False))
    grouped_ = data.make_dataset(pairs, pre, 2, length_grouping={"seed": 1})
    assert len(batches(grouped_)) == 2  # whole batches only (group_by_length)
    assert traced == [16]
    assert [x["token_ids"].shape for x, _ in first] == [(2, 16), (2, 16), (1, 16)]
    for (x, y), (x2, y2) in zip(first, again, strict=True):
        assert y.tolist() == y2.tolist()
        for key in x:
            np.testing.assert_array_equal(x[key], x2[key])
    pre.sequence_length = 8  # a changed preprocessor is traced again
    short = batches(data.make_dataset(pairs, pre, 2, dynamic_padding=False))
    assert traced == [16, 8]
    assert [x["token_ids"].shape for x, _ in short] == [(2, 8), (2, 8), (1, 8)]
    fresh = bert_preprocessor(sequence_length=8)(
        x=(tf.constant(pairs.premises[:2]), tf.constant(pairs.hypotheses[:2]))
    )
    np.testing.assert_array_equal(short[0][0]["token_ids"], fresh["token_ids"])
