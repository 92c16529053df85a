"""The one `tf.data` pipeline: shuffle, tokenize in graph, batch, trim padding."""

import logging
import weakref

import tensorflow as tf

from keras_metaopt.data.nli_pairs import NliPairs

logger = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER = 10_000  # When the dataset's size is unknown or infinite.
MEGA_BATCHES = 50  # group_by_length: batches per mega-batch (Hugging Face's)
_RAW_SPEC = (
    (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)),
    tf.TensorSpec([], tf.int32),
)


def pairs_to_dataset(pairs):
    """`NliPairs` as a dataset of raw `((premise, hypothesis), label)` elements.

    Usage (needs a data directory):

        ds = pairs_to_dataset(load_pairs(data_dir, "dev", "de"))
    """
    return tf.data.Dataset.from_tensor_slices(
        (
            (
                tf.constant(pairs.premises, tf.string, shape=[len(pairs)]),
                tf.constant(pairs.hypotheses, tf.string, shape=[len(pairs)]),
            ),
            tf.constant(pairs.labels, tf.int32, shape=[len(pairs)]),
        )
    )


def _as_raw_dataset(data):
    if isinstance(data, NliPairs):
        return pairs_to_dataset(data)
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not _matches_raw(spec):
            raise ValueError(
                "a dataset given to make_dataset must have raw elements "
                "((premise, hypothesis), label) of (tf.string, tf.string), tf.int32 "
                f"scalars, as pairs_to_dataset makes; got {spec}"
            )
        return data
    raise TypeError(f"expected NliPairs or tf.data.Dataset, got {type(data).__name__}")


def _matches_raw(spec):
    try:
        tf.nest.assert_same_structure(spec, _RAW_SPEC)
    except (TypeError, ValueError):
        return False
    return all(
        s.dtype == r.dtype and s.shape.rank == 0
        for s, r in zip(tf.nest.flatten(spec), tf.nest.flatten(_RAW_SPEC), strict=True)
    )


# tf.data traces the function of every `map` anew, and the keras-hub
# preprocessor is most of that trace (with the tiny test preset about 0.6 s of
# the 1.2 s a dataset takes to its first batch). Traced once per preprocessor
# and sequence length with a fixed signature, it is reused by every later map.
_TRACED = weakref.WeakKeyDictionary()
_PAIR_SPEC = ((tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)),)


def _traced_preprocessor(preprocessor):
    """`texts -> preprocessor(x=texts)` for batches of string pairs, as one
    `tf.function` per (preprocessor, its sequence length); the preprocessor
    itself when it cannot be cached (not weak-referenceable or hashable)."""
    try:
        per_length = _TRACED.setdefault(preprocessor, {})
    except TypeError:
        return lambda texts: preprocessor(x=texts)
    length = getattr(preprocessor, "sequence_length", None)
    if length not in per_length:
        owner = weakref.ref(preprocessor)  # the cache must not keep it alive

        def call(texts):
            # Keyword `x=`: a positional tuple would be read as (x, y) and
            # the hypothesis would silently become the "label".
            return owner()(x=texts)

        per_length[length] = tf.function(call, input_signature=_PAIR_SPEC)
    return per_length[length]


def _tokenizer_fn(preprocessor, need_mask):
    def tokenize(texts, labels):
        # Every map tokenizes batches of raw (premise, hypothesis) strings
        # (`_RAW_SPEC`, batched before the map): `_PAIR_SPEC` always fits.
        features = _traced_preprocessor(preprocessor)(texts)
        if not isinstance(features, dict) or "token_ids" not in features:
            raise ValueError(
                "the preprocessor must return a dict of features with 'token_ids' "
                f"(a keras_hub TextClassifierPreprocessor); got {features!r}"
            )
        if need_mask and "padding_mask" not in features:
            raise ValueError(
                "dynamic padding and length bucketing need a 'padding_mask' "
                f"feature; the preprocessor returned {sorted(features)}"
            )
        for value in features.values():  # Keep a static batch size, if any.
            value.set_shape(labels.shape[:1].concatenate(value.shape[1:]))
        return features, tf.cast(labels, tf.int32)

    return tokenize


def _real_lengths(features):
    return tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=-1)


def trim_to_longest(features, labels, pad_to_multiple_of=1):
    """Trims a padded batch to its longest real sequence (dynamic padding).

    Every feature of rank >= 2 is cut along axis 1 to `max(sum(padding_mask))`,
    rounded up to a multiple of `pad_to_multiple_of` (capped at the padded
    length), and at least 1 (an empty batch keeps one column). Assumes padding
    at the end, as keras-hub packers produce. The exported serving signature
    trims its batches with this too.
    """
    length = tf.maximum(tf.reduce_max(_real_lengths(features)), 1)
    padded = tf.shape(features["padding_mask"])[1]
    if pad_to_multiple_of > 1:
        multiple = tf.constant(pad_to_multiple_of, length.dtype)
        length = tf.minimum((length + multiple - 1) // multiple * multiple, padded)
    trimmed = {
        key: value[:, :length] if value.shape.rank >= 2 else value
        for key, value in features.items()
    }
    return trimmed, labels


def _sort_by_length(features, labels):
    """A mega-batch's rows, longest first (ties keep their order)."""
    order = tf.argsort(_real_lengths(features), direction="DESCENDING", stable=True)
    return (
        {key: tf.gather(value, order) for key, value in features.items()},
        tf.gather(labels, order),
    )


def _shuffle_batches(index, features, labels, batch_size, seed):
    """Splits a sorted mega-batch into batches and shuffles their order,
    seeded by (`seed`, the mega-batch's `index`): a pure function of both."""
    n = tf.shape(labels)[0] // batch_size
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=tf.stack([tf.cast(seed, tf.int64), index])
    )

    def split(value):
        rows = tf.reshape(
            value[: n * batch_size],
            tf.concat([[n, batch_size], tf.shape(value)[1:]], axis=0),
        )
        rows.set_shape([None, batch_size, *value.shape[1:]])
        return tf.gather(rows, order)

    return {key: split(v) for key, v in features.items()}, split(labels)


def group_by_length(
    tokenized,
    batch_size,
    *,
    seed=0,
    mega_batches=MEGA_BATCHES,
    first=0,
    drop_remainder=True,
):
    """Batches of similar length, from mega-batches (Hugging Face's
    `group_by_length`).

    `tokenized` yields single examples `(features, label)` with a
    `padding_mask`. Every `mega_batches × batch_size` consecutive examples are
    sorted by real length and cut into batches, whose order within the
    mega-batch is then shuffled, seeded by `seed` and the mega-batch's index
    (counted from `first`, for a stream that starts after `first` whole
    mega-batches). Hugging Face keeps them longest first, which would hand
    the L inner steps of a meta window a falling length schedule. Each batch
    holds pairs of similar length and the stream is a pure function of its
    input and `seed`. A last partial mega-batch is dropped (an endless stream
    has none); `drop_remainder=False` keeps its whole batches.
    """
    ds = tokenized.batch(mega_batches * batch_size, drop_remainder=drop_remainder)
    ds = ds.map(_sort_by_length).enumerate(start=first)
    return ds.map(
        lambda i, batch: _shuffle_batches(i, *batch, batch_size, seed)
    ).unbatch()


def make_dataset(
    data,
    preprocessor,
    batch_size,
    *,
    shuffle=False,
    seed=None,
    shuffle_buffer_size=None,
    repeat=False,
    drop_remainder=False,
    dynamic_padding=True,
    pad_to_multiple_of=1,
    bucket_boundaries=None,
    length_grouping=None,
    prefetch=True,
):
    """The training/evaluation `tf.data` pipeline every trainer uses.

    `data` is `NliPairs` or a raw dataset from `pairs_to_dataset` /
    `mix_languages`. Order: shuffle (seeded: the same seed gives the same
    order, reshuffled each epoch) -> repeat (True = forever, or an epoch
    count) -> tokenize in graph with the keras-hub `preprocessor`, called as
    `preprocessor(x=(premise, hypothesis))` so both segments are packed ->
    batch -> trim to the longest real sequence of each batch (optionally a
    multiple of `pad_to_multiple_of`) -> prefetch. With `bucket_boundaries`
    (e.g. `[32, 64, 96]`) examples are grouped by real length into batches,
    each of `batch_size`. With `length_grouping` (a dict of `group_by_length`'s
    keyword arguments `seed` and `mega_batches`, and `skip`: batches to skip)
    batches come from length-sorted mega-batches instead (`group_by_length`),
    after the shuffle and repeat. Elements:
    `(features, labels)`, features being the preprocessor's dict (token_ids,
    padding_mask[, segment_ids]), labels int32.

    Usage (needs the network for the preset):

        pre = keras_hub.models.TextClassifierPreprocessor.from_preset(
            "bert_base_multi", sequence_length=128)
        ds = make_dataset(pairs, pre, 32, shuffle=True, seed=0, repeat=True)
    """
    ds = _as_raw_dataset(data)
    if shuffle:
        size = int(ds.cardinality())
        buffer = shuffle_buffer_size or (size if size > 0 else DEFAULT_SHUFFLE_BUFFER)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat is True:
        ds = ds.repeat()
    elif repeat:
        ds = ds.repeat(int(repeat))
    if bucket_boundaries and length_grouping is not None:
        raise ValueError("give bucket_boundaries or length_grouping, not both")
    need_mask = dynamic_padding or bool(bucket_boundaries) or bool(length_grouping)
    tokenize = _tokenizer_fn(preprocessor, need_mask)
    if length_grouping is not None:
        # Resume: skip whole mega-batches before tokenizing, then the rest of
        # one in batches; that gives exactly the batches an unskipped stream
        # has from there on.
        grouping = {"seed": 0, "mega_batches": MEGA_BATCHES, "skip": 0}
        grouping.update(length_grouping)
        whole, rest = divmod(int(grouping.pop("skip")), grouping["mega_batches"])
        ds = ds.skip(whole * grouping["mega_batches"] * batch_size).batch(batch_size)
        ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        ds = group_by_length(
            ds, batch_size, first=whole, drop_remainder=drop_remainder, **grouping
        ).skip(rest)
    elif bucket_boundaries:
        boundaries = sorted(int(b) for b in bucket_boundaries)
        ds = ds.batch(batch_size).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.unbatch().bucket_by_sequence_length(
            lambda features, labels: _real_lengths(features),
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            drop_remainder=drop_remainder,
        )
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_padding:
        ds = ds.map(lambda x, y: trim_to_longest(x, y, pad_to_multiple_of))
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def mix_languages(
    datasets, *, sampling="uniform", sizes=None, seed=None, stop_on_empty_dataset=True
):
    """Samples elements across per-language datasets, seeded.

    `datasets` is a dict `{lang: NliPairs or tf.data.Dataset}` or a list.
    `sampling='uniform'` draws each element from a language chosen uniformly;
    `'proportional'` weights languages by size (`sizes`, else `len(NliPairs)`
    or a finite dataset's cardinality). With `stop_on_empty_dataset=True` the
    mixture ends when any input is exhausted, so the ratio holds throughout;
    repeat the inputs for a longer stream. Feed the (raw) mixture to
    `make_dataset` to get mixed-language batches.

    Usage (with `NliPairs` and a preprocessor as for `make_dataset`):

        mixed = mix_languages({"de": de_pairs, "es": es_pairs}, seed=0)
        ds = make_dataset(mixed, pre, 32)
    """
    if sampling not in ("uniform", "proportional"):
        raise ValueError(
            f"sampling must be 'uniform' or 'proportional', got {sampling!r}"
        )
    names = list(datasets) if isinstance(datasets, dict) else list(range(len(datasets)))
    items = [datasets[name] for name in names]
    if not items:
        raise ValueError("mix_languages needs at least one dataset")
    if sampling == "uniform":
        weights = [1.0] * len(items)
    else:
        if sizes is None:
            sizes = [
                len(item) if isinstance(item, NliPairs) else int(item.cardinality())
                for item in items
            ]
        elif isinstance(sizes, dict):
            sizes = [sizes[name] for name in names]
        if len(sizes) != len(items) or any(s <= 0 for s in sizes):
            raise ValueError(
                f"proportional sampling needs a positive, finite size per dataset "
                f"(pass sizes=...); got {sizes}"
            )
        weights = [float(s) for s in sizes]
    total = sum(weights)
    weights = [w / total for w in weights]
    logger.info(
        "Mixing %s with weights %s",
        names,
        ", ".join(f"{w:.3f}" for w in weights),
    )
    raw = [pairs_to_dataset(x) if isinstance(x, NliPairs) else x for x in items]
    return tf.data.Dataset.sample_from_datasets(
        raw, weights=weights, seed=seed, stop_on_empty_dataset=stop_on_empty_dataset
    )
