"""What the narrator says about an event, and the noisy, timed ASR words of it.

Why the narrator names the actor in only half the sentences (`p_name_actor`; docs/demo-corpus.md,
"The narrator names the actor in half the sentences"): if every sentence said "the red
square", the sort task would be solvable from single frames (find the red square), i.e.
from appearance alone, and the contrastive term would pull the video CLS toward colours
and shapes. A sentence that says "the shape moves to the left" can be placed in time only
from the motion, which takes several frames. With no actor named at all (corpus v2a), the
tiny CPU model did not leave the sort loss's ln 4 plateau within the science budget;
naming it in half the sentences keeps a way in while half the transcripts still need the
motion.

The sentence templates hold no order words ("first", "then", "again"), so a transcript
says what happens but never when (see `tvts.data.demo.plans`).
"""
from __future__ import annotations

import re

import numpy as np

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.tracks import Track


def fix_articles(text: str) -> str:
    """"A object" -> "An object": the templates say "a {obj}" whatever noun fills it."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def describe(track: Track, cfg: DemoConfig, rng: np.random.Generator) -> str:
    """A clean narration sentence for a one-step track, from the action's templates.

    The actor is named by its colour and shape with probability `p_name_actor`, else by a
    generic noun: a narrator who says *what happens* rather than *what it looks like*.
    """
    template = str(rng.choice(cfg.templates[track.steps[0].action]))
    named = rng.random() < cfg.p_name_actor
    obj = f"{track.color} {track.shape}" if named else str(rng.choice(cfg.generic_nouns))
    return fix_articles(template.format(obj=obj))


def asr_words(sentence: str, cfg: DemoConfig, rng: np.random.Generator) -> list[str]:
    """YouTube-ASR-like words for a sentence: lower case, no punctuation, noisy.

    Args:
        sentence: the clean sentence.
        cfg: noise probabilities and vocabularies.
        rng: the item's generator.
    Returns:
        Non-empty list of words with fillers, drops, mishearings and rare junk tokens.
    """
    clean = re.findall(r"[a-z0-9']+", sentence.lower())
    words: list[str] = []
    for k, word in enumerate(clean):
        if rng.random() < cfg.p_filler:
            words.append(str(rng.choice(cfg.fillers)))
        if rng.random() < cfg.p_drop and (words or k < len(clean) - 1):
            continue
        if word in cfg.mishearings and rng.random() < cfg.p_substitute:
            word = str(rng.choice(cfg.mishearings[word]))
        words.append(word)
    if rng.random() < cfg.p_mojibake:
        # A right single quote stored as UTF-8 and read back as cp1252: "itâ€™s".
        junk = str(rng.choice(cfg.mojibake_words)).encode("utf-8").decode("cp1252", errors="replace")
        words.insert(int(rng.integers(0, len(words) + 1)), junk)
    if rng.random() < cfg.p_html:
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cfg.html_tokens)))
    return words


def time_words(words: list[str], t0: float, t1: float, cfg: DemoConfig,
               rng: np.random.Generator) -> tuple[tuple[str, float], ...]:
    """Spread words at the speaking rate over a random stretch inside [t0, t1).

    Returns:
        (word, start time) pairs, non-decreasing, every time within [t0, t1].
    """
    speech = min(len(words) / cfg.words_per_s, 0.9 * (t1 - t0))
    start = rng.uniform(t0, t1 - speech)
    spacing = speech / len(words)
    times = start + spacing * (np.arange(len(words)) + rng.uniform(0, 0.3, len(words)))
    return tuple((w, min(max(round(float(t), 3), t0), t1)) for w, t in zip(words, times))
