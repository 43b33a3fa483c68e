"""Window planning: K clips of one length with gaps; transcripts are the words inside each clip."""
import numpy as np
import pytest

from tvts.data.config import WindowConfig
from tvts.data.windows import plan_windows, window_span


def words_every(seconds: float, duration: float):
    times = np.arange(0.1, duration, seconds)
    return [f"w{i}" for i in range(len(times))], times


def test_geometry_and_transcripts():
    cfg = WindowConfig(k=4, clip_lengths=(3.0,), gap_s=1.0)
    words, times = words_every(0.5, 60)
    windows, skipped = plan_windows("vid", 60.0, words, times, cfg)
    assert windows and not skipped
    for w in windows:
        assert w.end - w.start == pytest.approx(window_span(4, 3.0, 1.0)) == 15.0
        assert w.end <= 60
        for a, b in zip(w.clips, w.clips[1:]):
            assert b.start - a.end == pytest.approx(1.0, abs=1e-3)
        for c in w.clips:
            inside = [x for x, t in zip(words, times) if c.start <= t < c.end]
            assert c.text.split() == inside
    starts = [w.start for w in windows]
    assert all(b - a >= 16.0 - 1e-6 for a, b in zip(starts, starts[1:]))  # no overlap


def test_deterministic_per_video():
    cfg = WindowConfig()
    words, times = words_every(0.4, 120)
    a, _ = plan_windows("vid_a", 120.0, words, times, cfg)
    b, _ = plan_windows("vid_a", 120.0, words, times, cfg)
    c, _ = plan_windows("vid_b", 120.0, words, times, cfg)
    assert a == b
    assert [w.start for w in a] != [w.start for w in c]


def test_clip_without_words_skipped():
    cfg = WindowConfig(k=4, clip_lengths=(3.0,), gap_s=1.0, min_words_per_clip=1)
    words, times = ["only"], np.array([2.0])
    windows, skipped = plan_windows("vid", 60.0, words, times, cfg)
    assert windows == [] and skipped["window_clip_without_words"] >= 1


def test_short_video_has_no_window():
    words, times = words_every(0.5, 10)
    windows, skipped = plan_windows("vid", 10.0, words, times, WindowConfig())
    assert windows == [] and not skipped


def test_max_windows():
    words, times = words_every(0.3, 300)
    windows, _ = plan_windows("vid", 300.0, words, times, WindowConfig(max_windows_per_video=3))
    assert [w.index for w in windows] == [0, 1, 2]
