"""benchmarks.bench_fast_training: how repeats are combined (no model is run)."""

import pytest

from benchmarks import bench_fast_training as bench


def _worker_result(seconds, real_per_step=1000.0, rss=3000.0):
    kind = {
        "seconds_per_step": seconds,
        "real_tokens_per_second": real_per_step / seconds,
        "padded_tokens_per_real_token": 1.07,
        "mean_padded_length": 47.3,
    }
    return {
        **{k: dict(kind) for k in bench.KINDS},
        "peak_rss_mb": rss,
        "dtypes": ["float32", "int64"],
    }


def test_combine_takes_the_median_repeat_and_its_tokens_per_second():
    repeats = [_worker_result(3.8, rss=3825), _worker_result(2.0), _worker_result(2.1)]
    result = bench.combine(repeats)
    for kind in bench.KINDS:
        assert result[kind]["seconds_per_step"] == 2.1
        assert result[kind]["real_tokens_per_second"] == pytest.approx(1000 / 2.1)
        assert result[kind]["seconds_per_step_repeats"] == [3.8, 2.0, 2.1]
        assert result[kind]["padded_tokens_per_real_token"] == 1.07
        assert result[kind]["mean_padded_length"] == 47.3
    assert result["peak_rss_mb"] == 3825
    assert result["dtypes"] == ["float32", "int64"]


def test_combine_of_an_even_count_is_the_mean_of_the_middle_two():
    result = bench.combine([_worker_result(s) for s in (1.0, 4.0, 2.0, 3.0)])
    assert result["plain"]["seconds_per_step"] == 2.5
    assert result["plain"]["real_tokens_per_second"] == pytest.approx(400.0)


def test_combine_of_one_repeat_is_that_repeat():
    result = bench.combine([_worker_result(1.5)])
    assert result["heldout"]["seconds_per_step"] == 1.5
    assert result["heldout"]["real_tokens_per_second"] == pytest.approx(1000 / 1.5)


def test_repeats_below_one_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--preset", "presets/tiny", "--repeats", "0"])
    assert exit_.value.code == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err
