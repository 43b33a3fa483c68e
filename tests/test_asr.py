"""ASR cleaning and DTW alignment (tvts/data/asr.py)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from tvts.data.config import AlignConfig
from tvts.io import RejectError
from tvts.data import asr as asr_mod
from tvts.data.asr import (
    Alignment,
    align_asr_to_denoised,
    align_reference,
    band_radius,
    clean_asr_words,
    denoised_words,
    garbled_fraction,
    normalise_word,
    check_transcript,
)

VOCAB = ("the a and to of we you it is that this so now here there time water paint "
         "brush color table wood piece glue cut edge side little bit really going "
         "make sure look nice start first next then just want show how about okay "
         "right thing way over under back front top bottom let me see").split()
FILLERS = ("um", "uh", "like", "so", "you", "know")


def noisy_pair(rng: random.Random, n_words: int) -> tuple[list[str], np.ndarray, list[str]]:
    """A denoised transcript and a noisy ASR of it: drops, substitutions, fillers, lower case."""
    den = [rng.choice(VOCAB) for _ in range(n_words)]
    den = [w.capitalize() + "," if rng.random() < 0.1 else w for w in den]
    asr: list[str] = []
    for w in den:
        r = rng.random()
        if r < 0.08:
            continue  # the ASR missed the word
        if r < 0.16:
            w = rng.choice(VOCAB)  # misrecognised
        elif r < 0.22:
            w = w[:-1] or w  # garbled ending
        asr.append(normalise_word(w))
        if rng.random() < 0.08:
            asr.append(rng.choice(FILLERS))
    if not asr:
        asr = [rng.choice(FILLERS)]
    times = np.cumsum(np.array([rng.uniform(0.1, 0.6) for _ in asr]))
    return asr, times, den


def assert_same(fast: Alignment, ref: Alignment) -> None:
    assert fast.words == ref.words
    np.testing.assert_array_equal(fast.asr_index, ref.asr_index)
    np.testing.assert_array_equal(fast.times, ref.times)
    assert fast.cost == ref.cost


# ---------------------------------------------------------------- cleaning


def test_clean_drops_entities_fixes_mojibake_and_keeps_order():
    subs = [
        {"word": "&gt;&gt;", "time": 0.0},
        {"word": "itâ€™s", "time": 0.5},
        {"word": "  ", "time": 0.7},
        {"word": None, "time": 0.8},
        {"word": "cafÃ©", "time": 1.0},
        {"word": "&#39;", "time": 1.1},
        {"word": "amp;", "time": 1.2},
        {"word": "open", "time": float("nan")},
        {"word": "open", "time": "2.0"},
        "not a dict",
        {"time": 1.3},
        {"word": " today ", "time": np.float32(1.5)},
        {"word": "", "time": 1.6},
        {"word": "now", "time": 2},
    ]
    words, times = clean_asr_words(subs)
    # ftfy undoes the UTF-8-read-as-cp1252 mojibake (and straightens the quote).
    assert words == ["it's", "café", "today", "now"]
    assert times.dtype == np.float64
    np.testing.assert_array_equal(times, [0.5, 1.0, 1.5, 2.0])


def test_clean_empty_inputs():
    words, times = clean_asr_words([])
    assert words == [] and times.shape == (0,)
    words, times = clean_asr_words(None)
    assert words == [] and times.shape == (0,)


def test_denoised_words_keeps_case_and_punctuation():
    den = [{"cleanasr": "Hello, World!", "noisyasr": "hello world"},
           {"noisyasr": "x"}, {"cleanasr": "  It's  me. "}]
    assert denoised_words(den) == ["Hello,", "World!", "It's", "me."]


def test_normalise_word():
    assert normalise_word("Don't,") == "dont"
    assert normalise_word("«Bonjour»") == "bonjour"
    assert normalise_word("ＡＢＣ") == "abc"
    assert normalise_word("...") == ""


# ---------------------------------------------------------------- alignment


def test_known_alignment_with_drop_substitution_and_fillers():
    #             0     1      2        3     4      5       6      7      8      9
    asr = ["so", "um", "today", "we", "paint", "thee", "uh", "table", "top", "now"]
    times = np.arange(len(asr), dtype=np.float64) * 0.5
    # "first" was dropped by the ASR, "the" misrecognised as "thee", "um"/"uh" are fillers.
    den = ["So,", "today", "we", "first", "paint", "the", "table", "top."]
    out = align_asr_to_denoised(asr, times, den, AlignConfig())
    assert out.words == den
    # "first" has no ASR word of its own: it shares "paint" (edit distance 4) rather
    # than "we" (distance 5); the fillers get no denoised word at all.
    expected = [0, 2, 3, 4, 4, 5, 7, 8]
    assert out.asr_index.tolist() == expected
    np.testing.assert_array_equal(out.times, times[expected])
    assert_same(out, align_reference(asr, times, den, AlignConfig()))


def test_identical_sequences_align_diagonally_at_zero_cost():
    words = "we cut the wood".split()
    out = align_asr_to_denoised(words, [0.0, 1.0, 2.0, 3.0], words, AlignConfig())
    assert out.asr_index.tolist() == [0, 1, 2, 3] and out.cost == 0.0


@pytest.mark.parametrize("seed", range(50))
def test_fast_equals_reference_on_noisy_transcripts(seed):
    rng = random.Random(seed)
    n_words = rng.choice([1, 2, 3, rng.randint(1, 40), rng.randint(40, 120), rng.randint(40, 120)])
    asr, times, den = noisy_pair(rng, n_words)
    outside = 1000.0
    if seed % 5 == 0:
        den = den + den  # much longer than len(asr) + R: exercises the truncation
    elif seed % 5 == 1:
        den = den[: max(1, len(den) // 3)]  # much shorter: the path is forced out of the band
    elif seed % 5 == 2:
        outside = rng.choice([2.0, 0.5])  # leaving the band can be cheaper than staying
    band = rng.choice([1, 4, 32])
    cfg = AlignConfig(band_min=band, band_frac=rng.choice([0.0, 0.1]), outside_cost=outside)
    fast = align_asr_to_denoised(asr, times, den, cfg)
    ref = align_reference(asr, times, den, cfg)
    assert_same(fast, ref)
    assert len(fast.words) == min(len(den), len(asr) + band_radius(len(asr), cfg))
    assert np.all(np.diff(fast.asr_index) >= 0)


@pytest.mark.parametrize("seed", range(10))
def test_band_only_dtw_equals_full_matrix_dtw(seed):
    # _band_is_exact claims that, under its conditions, skipping out-of-band cells
    # cannot change anything: check it against the full-matrix layout directly.
    rng = random.Random(100 + seed)
    asr, _, den = noisy_pair(rng, rng.randint(20, 120))
    radius = max(rng.choice([1, 3, 8]), abs(len(asr) - len(den)))
    asr_vocab, asr_codes = asr_mod._codes(asr)
    den_vocab, den_codes = asr_mod._codes(den[: len(asr) + radius])
    table = asr_mod.process.cdist(asr_vocab, den_vocab, scorer=asr_mod.Levenshtein.distance, dtype=np.int32)
    n, m = len(asr_codes), len(den_codes)
    assert asr_mod._band_is_exact(n, m, radius, table, 1000.0)
    results = []
    for banded in (True, False):
        layout = asr_mod._Layout(n, m, radius, banded)
        total, moves = asr_mod._dtw(table, asr_codes, den_codes, layout, 1000.0)
        results.append((total, *asr_mod._backtrack(moves, layout)))
    assert results[0][0] == results[1][0] and results[0][2] == results[1][2]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_single_words():
    cfg = AlignConfig()
    for asr, den in [(["a"], ["b"]), (["a"], ["x", "y", "z"]), (["x", "y", "z"], ["a"])]:
        times = np.arange(len(asr), dtype=np.float64)
        fast = align_asr_to_denoised(asr, times, den, cfg)
        assert_same(fast, align_reference(asr, times, den, cfg))
    # DTW pins the path to (0, 0), so a lone denoised word always takes the first ASR time.
    assert align_asr_to_denoised(["x", "y", "z"], [0.0, 1.0, 2.0], ["y"], cfg).asr_index.tolist() == [0]


def test_truncates_denoised_words_to_len_asr_plus_band():
    cfg = AlignConfig(band_min=2, band_frac=0.0)
    out = align_asr_to_denoised(["a", "b", "c"], [0.0, 1.0, 2.0], list("abcdefghij"), cfg)
    assert out.words == list("abcde")


def test_band_is_left_only_when_forced():
    cfg = AlignConfig(band_min=1, band_frac=0.0)  # R = 1
    rng = random.Random(7)
    for _ in range(10):
        den = [rng.choice(VOCAB) for _ in range(30)]
        asr = [rng.choice(VOCAB) for _ in range(30)]  # unrelated words: no pull along the diagonal
        out = align_asr_to_denoised(asr, np.arange(30.0), den, cfg)
        assert np.all(np.abs(out.asr_index - np.arange(30)) <= 1)
        assert out.cost < cfg.outside_cost
    # 10 ASR words, 11 denoised kept (10 + R): the end cell (9, 10) lies in the band ...
    out = align_asr_to_denoised(list("abcdefghij"), np.arange(10.0), list("abcdefghijklm"), cfg)
    assert len(out.words) == 11 and out.cost < cfg.outside_cost
    # ... but with 30 ASR words for 5 denoised ones, the path must cross outside cells.
    asr = list("abcdefghijklmnopqrstuvwxyz1234")
    out = align_asr_to_denoised(asr, np.arange(30.0), list("abcde"), cfg)
    ref = align_reference(asr, np.arange(30.0), list("abcde"), cfg)
    assert_same(out, ref)
    assert out.cost * 30 >= cfg.outside_cost


def test_rejects_bad_inputs():
    cfg = AlignConfig()
    with pytest.raises(ValueError, match="no ASR words"):
        align_asr_to_denoised([], [], ["a"], cfg)
    with pytest.raises(ValueError, match="no denoised words"):
        align_asr_to_denoised(["a"], [0.0], [], cfg)
    with pytest.raises(ValueError, match="asr_times"):
        align_asr_to_denoised(["a", "b"], [0.0], ["a"], cfg)
    with pytest.raises(ValueError, match="no ASR words"):
        align_reference([], [], ["a"], cfg)
    with pytest.raises(ValueError, match="outside_cost"):
        align_asr_to_denoised(["a"], [0.0], ["a"], AlignConfig(outside_cost=float("inf")))


# ---------------------------------------------------------------- garbled transcripts


def test_garbled_fraction():
    assert garbled_fraction("so today we paint the table in 2023".split()) == 0.0
    # Mojibake that ftfy can repair counts as clean ...
    assert garbled_fraction(["itâ€™s", "cafÃ©", "nice"]) == 0.0
    # ... undecodable bytes do not.
    assert garbled_fraction(["\ufffd\ufffd", "ok"]) == 0.5
    assert garbled_fraction(["今天", "我们", "画画", "ok"]) == 0.75
    assert garbled_fraction(["привет", "мир"]) == 1.0
    assert garbled_fraction(["♪", "♪", "music"]) == pytest.approx(2 / 3)
    assert garbled_fraction([]) == 1.0


def test_check_transcript_reasons():
    cfg = AlignConfig(min_asr_words=3, max_garbled_fraction=0.3, max_length_ratio=3.0)
    cases = [([], ["a"], "empty_asr"), (["a", "b"], ["a"], "too_few_asr_words"),
             (["a", "b", "c"], [], "empty_denoised"), (["今天", "我们", "画画"], ["x"], "garbled_asr"),
             (["a", "b", "c"], ["w"] * 10, "denoised_length_mismatch"),
             (["a"] * 30, ["w"] * 5, "denoised_length_mismatch")]
    for asr_words, den, reason in cases:
        with pytest.raises(RejectError) as err:
            check_transcript(asr_words, den, cfg)
        assert err.value.reason == reason
    check_transcript(["a", "b", "c"], ["a", "b"], cfg)
