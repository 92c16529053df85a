"""The random inputs the meta-step benchmarks time."""

import numpy as np

from benchmarks.encoder_shapes import random_rows, repeated_batches


def test_random_rows_are_seeded_unpadded_one_segment_rows():
    features, labels = random_rows(6, 5, vocabulary_size=9, seed=3)
    again, again_labels = random_rows(6, 5, vocabulary_size=9, seed=3)
    other, _ = random_rows(6, 5, vocabulary_size=9, seed=4)
    assert features["token_ids"].shape == (6, 5)
    assert features["token_ids"].dtype == np.int32
    # ids below 5 are left out (special tokens in real vocabularies)
    assert features["token_ids"].min() >= 5 and features["token_ids"].max() < 9
    np.testing.assert_array_equal(features["segment_ids"], np.zeros((6, 5)))
    np.testing.assert_array_equal(features["padding_mask"], np.ones((6, 5)))
    assert labels.shape == (6,) and set(labels) <= {0, 1, 2}
    np.testing.assert_array_equal(features["token_ids"], again["token_ids"])
    np.testing.assert_array_equal(labels, again_labels)
    assert not np.array_equal(features["token_ids"], other["token_ids"])


def test_random_rows_draw_ids_then_labels_from_one_generator():
    # the arrays the benchmarks timed before the helper existed
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 100, (8, 4))
    labels = rng.integers(0, 3, 8)
    features, got = random_rows(8, 4, vocabulary_size=100)
    np.testing.assert_array_equal(features["token_ids"], ids)
    np.testing.assert_array_equal(got, labels)


def test_repeated_batches_cycle_full_batches():
    features, labels = random_rows(5, 3, vocabulary_size=50)
    batches = iter(repeated_batches(features, labels, 2))
    seen = [next(batches) for _ in range(3)]
    # 5 rows make two full batches; the fifth row is dropped, then it repeats
    np.testing.assert_array_equal(seen[0][1].numpy(), labels[:2])
    np.testing.assert_array_equal(seen[1][1].numpy(), labels[2:4])
    np.testing.assert_array_equal(seen[2][1].numpy(), labels[:2])
    np.testing.assert_array_equal(
        seen[1][0]["token_ids"].numpy(), features["token_ids"][2:4]
    )
