"""Benchmark: vectorised ASR alignment against the cell-by-cell reference, same transcripts.

    .venv/bin/python bench/align_asr.py [--videos N]

Uses the demo corpus' YT-Temporal annotations when data/demo/yttemporal/videos.tsv
exists, otherwise seeded synthetic transcripts of 100-600 words with realistic ASR noise
(dropped and misrecognised words, fillers, HTML entities, mojibake). Prints the speed
ratio reference / fast, the share of identical word assignments, and the fast path's
throughput on one long transcript (3000 ASR words by default: 10-17 minutes of speech).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from tvts.data.config import AlignConfig  # noqa: E402
from tvts.data.formats.yttemporal import load_annotation, read_video_list  # noqa: E402
from tvts.io import RejectError  # noqa: E402
from tvts.data.asr import (  # noqa: E402
    align_asr_to_denoised,
    align_reference,
    band_radius,
    clean_asr_words,
    denoised_words,
)

DEMO = Path("data/demo/yttemporal")
COMMON = ("the a and to of i you it is that in we this so for on with be have just "
          "going gonna do not what can get my like up now here all out one there "
          "about if your they was are right okay really see make know little bit "
          "time want then go come look back way over thing good").split()
FILLERS = ("um", "uh", "like", "you know", "so")


def _vocabulary(rng: random.Random, size: int = 1500) -> list[str]:
    """Common words plus pseudo-English content words, most frequent first (Zipf)."""
    onsets = "b c d f g h l m n p r s t v w br cl st tr sh ch".split()
    vowels = "a e i o u ea oo ai".split()
    codas = "n t r s l m ck ng nd st".split()
    endings = ["", "", "er", "ing", "ed", "y"]
    content = {rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) + rng.choice(endings)
               for _ in range(size * 2)}
    return COMMON + sorted(content)[:size]


def _misrecognise(rng: random.Random, word: str, vocab: list[str]) -> str:
    if rng.random() < 0.5 and len(word) > 2:  # near-homophone: one character changed
        k = rng.randrange(len(word))
        return word[:k] + rng.choice("aeioustnrl") + word[k + 1:]
    return rng.choice(vocab[:200])


def synth_annotation(rng: random.Random, n_words: int, vocab: list[str]) -> dict:
    """A MERLOT-format annotation: denoised sentences plus the noisy timed ASR of them."""
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    spoken = rng.choices(vocab, weights=weights, k=n_words)
    sentences, subtitles, t = [], [], rng.uniform(0.0, 5.0)
    for start in range(0, n_words, 12):
        chunk = spoken[start:start + 12]
        sentences.append({"cleanasr": " ".join(chunk).capitalize() + rng.choice([".", "!", "?", ","]),
                          "noisyasr": " ".join(chunk)})
    for word in spoken:
        t += rng.uniform(0.2, 0.5)
        r = rng.random()
        if r < 0.05:
            continue  # dropped by the ASR
        if r < 0.12:
            word = _misrecognise(rng, word, vocab)
        elif r < 0.14:
            word = word + "â€™s"  # UTF-8 read as cp1252: ftfy must repair it
        spoken_here = ([rng.choice(FILLERS)] if rng.random() < 0.06 else []) + [word]
        for token in " ".join(spoken_here).split():
            subtitles.append({"word": token, "time": round(t, 3)})
        if rng.random() < 0.01:
            subtitles.append({"word": "&gt;&gt;", "time": round(t, 3)})
    return {"subtitles": subtitles, "denoised": sentences}


def demo_annotations(limit: int) -> list[dict]:
    """Annotations of the first `limit` demo videos, read with the pipeline's own reader."""
    annotations = []
    for entry in read_video_list(DEMO / "videos.tsv")[:limit]:
        try:
            ann = load_annotation(entry, DEMO)
        except RejectError:  # the demo's deliberately broken items
            continue
        annotations.append({"subtitles": ann.subtitles, "denoised": ann.denoised})
    return annotations


def transcripts(n_videos: int, seed: int) -> tuple[str, list[tuple[list[str], np.ndarray, list[str]]]]:
    if (DEMO / "videos.tsv").exists():
        source, annotations = "demo corpus", demo_annotations(n_videos)
    else:
        rng = random.Random(seed)
        vocab = _vocabulary(rng)
        source = "synthetic (seeded)"
        annotations = [synth_annotation(rng, rng.randint(100, 600), vocab) for _ in range(n_videos)]
    out = []
    for ann in annotations:
        asr, times = clean_asr_words(ann.get("subtitles", []))
        den = denoised_words(ann.get("denoised", []))
        if asr and den:
            out.append((asr, times, den))
    return source, out


def timed(fn, cases, cfg) -> tuple[float, list]:
    start = time.perf_counter()
    results = [fn(asr, times, den, cfg) for asr, times, den in cases]
    return time.perf_counter() - start, results


def transcripts_long(rng: random.Random, n_asr: int) -> tuple[list[str], np.ndarray, list[str]]:
    """One synthetic transcript of about `n_asr` ASR words (~175 words per minute of speech)."""
    vocab = _vocabulary(rng)
    ann = synth_annotation(rng, n_asr, vocab)
    asr, times = clean_asr_words(ann["subtitles"])
    return asr, times, denoised_words(ann["denoised"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=50, help="transcripts compared against the reference")
    parser.add_argument("--long-words", type=int, default=3000, help="ASR words of the long transcript")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = AlignConfig()

    source, cases = transcripts(args.videos, args.seed)
    if not cases:
        raise SystemExit(f"no usable transcripts in the {source}")
    align_asr_to_denoised(*cases[0], cfg)  # warm caches/imports outside the timing
    t_fast, fast = timed(align_asr_to_denoised, cases, cfg)
    t_ref, ref = timed(align_reference, cases, cfg)
    words = sum(len(a.words) for a in fast)
    cells = sum(len(asr) * len(a.words) for (asr, _, _), a in zip(cases, fast))
    same = sum(int(np.sum(a.asr_index == b.asr_index)) for a, b in zip(fast, ref))
    costs_equal = all(a.cost == b.cost for a, b in zip(fast, ref))

    print(f"ASR alignment: fast (vectorised) vs reference (per cell), {source}, AlignConfig defaults")
    print("| videos | ASR words | aligned words | cells | fast s | reference s | speed ratio (ref/fast) | identical assignments | fast words/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(cases)} | {sum(len(c[0]) for c in cases)} | {words} | {cells} | {t_fast:.3f} | {t_ref:.2f} "
          f"| {t_ref / t_fast:.1f}x | {same / words:.4f} | {words / t_fast:,.0f} |")
    print(f"costs equal: {costs_equal}")

    rng = random.Random(args.seed + 1)
    asr, times, den = transcripts_long(rng, args.long_words)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        out = align_asr_to_denoised(asr, times, den, cfg)
        runs.append(time.perf_counter() - start)
    best = min(runs)
    print(f"long transcript: {len(asr)} ASR words x {len(out.words)} denoised words "
          f"(R={band_radius(len(asr), cfg)}, {len(asr) * len(out.words):,} cells, "
          f"{times[-1] / 60:.1f} min of speech): fast best of 3 {best:.3f} s = {len(out.words) / best:,.0f} words/s, "
          f"mean cost {out.cost:.3f}")


if __name__ == "__main__":
    main()
