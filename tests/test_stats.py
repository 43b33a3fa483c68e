"""Bootstrap intervals over test clips, paired by seed (tvts.stats): the pre-registered decision rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tvts.stats import Interval, load_per_clip, metric_interval, paired_difference


def _hits(rate: float, n: int, rng) -> np.ndarray:
    return (rng.random(n) < rate).astype(float)


def test_interval_covers_the_rate_and_narrows_with_more_clips():
    rng = np.random.default_rng(0)
    small = metric_interval([_hits(0.6, 96, rng) for _ in range(3)], replicates=2000)
    large = metric_interval([_hits(0.6, 960, rng) for _ in range(3)], replicates=2000)
    assert small.lo < small.value < small.hi and large.lo < 60 < large.hi
    assert (large.hi - large.lo) < 0.5 * (small.hi - small.lo)     # ~ 1 / sqrt(10)


def test_paired_difference_sees_a_shift_that_seed_noise_hides_in_unpaired_means():
    # both methods get the same hard clips wrong; B additionally misses 5 % of the easy ones
    rng = np.random.default_rng(1)
    easy = rng.random(960) < 0.7
    a = [easy.astype(float) for _ in range(3)]
    b = [(easy & (rng.random(960) > 0.05)).astype(float) for _ in range(3)]
    d = paired_difference(a, b, replicates=2000)
    assert d.value == pytest.approx(100 * np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
    assert d.verdict() == "ahead" and d.lo > 2
    assert paired_difference(b, a, replicates=2000).verdict() == "behind"
    same = paired_difference(a, a, replicates=500)
    assert same.verdict() == "level" and same.value == 0


def test_nan_clips_are_not_scored_and_mismatched_sets_are_refused():
    h = np.array([1.0, np.nan, 0.0, 1.0])
    assert metric_interval([h], replicates=200).value == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="same clips"):
        paired_difference([h], [h[:3]])
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([h, h], [h])


def test_verdict_rule():
    assert Interval(1.0, 0.1, 2.0).verdict() == "ahead"
    assert Interval(-1.0, -2.0, -0.1).verdict() == "behind"
    assert Interval(0.5, -0.1, 1.0).verdict() == "level"


def test_load_per_clip_reads_an_evaluation_json(tmp_path):
    path = tmp_path / "ssv2.json"
    path.write_text(json.dumps({"per_clip": {"ids": ["a", "b"], "cls/top1": [1.0, None]}}))
    hits = load_per_clip(path)
    assert list(hits["ids"]) == ["a", "b"] and hits["cls/top1"][0] == 1.0 and np.isnan(hits["cls/top1"][1])
    assert load_per_clip(tmp_path / "none.json") is None


def _write_eval(root, exp, hits, section="temporal", metric="cls/arrow_top1"):
    path = root / exp / "eval" / section / "ssv2.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"per_clip": {"ids": [str(i) for i in range(len(hits))], metric: list(hits)}}))


def test_grid_intervals_pair_methods_by_seed_from_the_evaluation_jsons(tmp_path):
    from tvts.compare import GridIntervals, GroupedTable, RowKey, differences_text, render_grouped_text
    rng = np.random.default_rng(3)
    members = {"tvts": ["tvts-s0", "tvts-s1"], "random": ["random-s0", "random-s1"], "old": ["old-s0"]}
    for seed in (0, 1):
        _write_eval(tmp_path, f"tvts-s{seed}", (rng.random(960) < 0.8).astype(float))
        _write_eval(tmp_path, f"random-s{seed}", (rng.random(960) < 0.5).astype(float))
    row = RowKey("temporal", "ssv2", "cls/arrow_top1")
    iv = GridIntervals(tmp_path, members, replicates=500)
    assert iv.difference("random", row).verdict() == "ahead"
    assert iv.interval("old", row) is None and iv.difference("old", row) is None   # no per-clip hits: no interval
    g = GroupedTable(list(members), members, [row], show_paper=False)
    text = differences_text(g, iv)
    assert "random" in text and "ahead" in text and "old" not in text
    assert "[" in render_grouped_text(g, iv)
