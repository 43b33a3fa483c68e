"""ASR cleaning and DTW alignment of YT-Temporal transcripts (docs/method.md, 'ASR alignment').

YT-Temporal ships two views of each transcript: the raw YouTube ASR words, each with a
start time, and MERLOT's denoised sentences, which read well but carry no timing. We
give every denoised word a time by aligning the two word sequences with DTW over an
edit-distance cost matrix, then letting each denoised word inherit the time of the first
ASR word it is paired with.

The official code redoes this in the data loader for every sample and every epoch; here
it runs once per video, and the fast path is vectorised so that a 15-minute transcript
takes well under a second:

* Levenshtein distances are computed only between *unique* normalised words, by
  rapidfuzz's compiled `cdist`, and gathered into the cost cells with index arrays.
* The DTW runs one row at a time in numpy. Within a row the recurrence
  x[j] = c[j] + min(a[j], x[j-1]) is solved in closed form with a cumulative sum and
  a running minimum (see `_dtw_row`), so there is no Python loop per cell.
* Only the 2R + 1 band cells of each row are computed when that provably cannot change
  the result (see `_band_is_exact`); otherwise the whole matrix is.
* With integer-valued costs (edit distances, and the default outside_cost) every sum
  is exact in float64, so the fast path is bit-identical to the per-cell reference
  `align_reference`, tie-breaks included. (The same holds for any outside_cost that is
  a short binary fraction, e.g. 0.5; for one like 0.1 the two may round differently.)
"""
from __future__ import annotations

import functools
import math
import numbers
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import ftfy
import ftfy.badness
import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from tvts.data.config import AlignConfig
from tvts.io import RejectError

# Backtrack moves, listed in tie-break order: on equal accumulated cost the backtrack
# prefers the diagonal (both words matched), then UP (an extra ASR word, e.g. a filler
# such as "um"), then LEFT (an extra denoised word, e.g. one the ASR dropped).
DIAG, UP, LEFT, START = 0, 1, 2, 3


@dataclass(frozen=True)
class Alignment:
    """Denoised words with the times they inherit from the ASR.

    Attributes:
        words: the denoised words that were aligned (after truncation to len(asr) + R).
        times: start time in seconds of each word, shape (len(words),), float64.
        asr_index: the ASR word each denoised word is attached to, shape (len(words),),
            non-decreasing.
        cost: mean cost per step of the DTW path: the accumulated cost at the end cell
            divided by the number of cells on the path. About 0-2 for a good alignment;
            >= outside_cost / path length whenever the path had to leave the band.
    """

    words: list[str]
    times: np.ndarray
    asr_index: np.ndarray
    cost: float


# --------------------------------------------------------------------------- cleaning


def _is_entity(word: str) -> bool:
    # YouTube ASR leaks HTML entities such as "&gt;&gt;" (speaker change) or "&#39;".
    return word.startswith("&") or word.endswith(";")


def _valid_time(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def clean_asr_words(subtitles: Iterable[Any]) -> tuple[list[str], np.ndarray]:
    """Clean raw YouTube ASR words: drop HTML entities, fix the encoding, drop empties.

    Args:
        subtitles: the annotation's `subtitles` list, `[{"word": str, "time": float}]`.
            Entries that are not mappings, or whose word is not a string or whose time is
            missing, non-numeric or not finite, are skipped.
    Returns:
        (words, times): the kept words in their original order, and their start times
        in seconds as a float64 array of the same length.
    """
    words: list[str] = []
    times: list[float] = []
    fixed: dict[str, str] = {}  # ASR vocabularies repeat a lot; ftfy is the slow part
    for entry in subtitles or ():
        if not isinstance(entry, dict):
            continue
        word, time = entry.get("word"), entry.get("time")
        if not isinstance(word, str) or not _valid_time(time):
            continue
        word = word.strip()
        if not word or _is_entity(word):
            continue
        if word not in fixed:
            fixed[word] = ftfy.fix_text(word).strip()
        if fixed[word]:
            words.append(fixed[word])
            times.append(float(time))
    return words, np.asarray(times, dtype=np.float64)


def denoised_words(denoised: Iterable[Any]) -> list[str]:
    """Split MERLOT's denoised sentences into words, keeping casing and punctuation.

    Args:
        denoised: the annotation's `denoised` list, `[{"cleanasr": str, ...}]`, in order.
            Entries without a string `cleanasr` are skipped.
    Returns:
        The words of all sentences, in order (whitespace split).
    """
    words: list[str] = []
    for entry in denoised or ():
        text = entry.get("cleanasr") if isinstance(entry, dict) else None
        if isinstance(text, str):
            words.extend(text.split())
    return words


@functools.lru_cache(maxsize=1 << 16)
def normalise_word(word: str) -> str:
    """The form of a word that the alignment cost compares.

    NFKC-normalised (so full-width and compatibility forms compare equal), lower-cased,
    with every Unicode punctuation character (categories P*) removed, anywhere in the
    word: "Don't," -> "dont", "«Hello»" -> "hello".

    Args:
        word: one word.
    Returns:
        The normalised word (possibly empty, for a punctuation-only token).
    """
    text = unicodedata.normalize("NFKC", word).lower()
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))


@functools.lru_cache(maxsize=1 << 16)
def _is_garbled(word: str) -> bool:
    text = ftfy.fix_text(word)
    if "\ufffd" in text or ftfy.badness.is_bad(text):
        return True  # undecodable bytes, or mojibake that ftfy could not undo
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        # Numbers ("2023") are fine; tokens like "♪" or "..." carry no words.
        return not any(ch.isdigit() for ch in text)
    latin = sum(unicodedata.name(ch, "").startswith("LATIN") for ch in letters)
    return latin * 2 < len(letters)


def garbled_fraction(words: Sequence[str]) -> float:
    """Share of words that are mis-encoded or mostly non-Latin, after ftfy.

    A word counts as garbled when, after `ftfy.fix_text`, it contains U+FFFD or text
    that ftfy still rates as mojibake, or fewer than half of its letters are Latin, or
    it has neither letters nor digits. Used to reject transcripts whose ASR is not
    (Latin-script) language: the text encoder and the alignment both assume it is.

    Args:
        words: cleaned ASR words.
    Returns:
        A fraction in [0, 1]; 1.0 for an empty list.
    """
    if not words:
        return 1.0
    return sum(_is_garbled(w) for w in words) / len(words)


def check_transcript(asr_words: Sequence[str], den_words: Sequence[str], cfg: AlignConfig) -> None:
    """Reject a transcript that cannot be aligned meaningfully, each case with its own reason.

    Args:
        asr_words: cleaned ASR words (`clean_asr_words`).
        den_words: denoised words (`denoised_words`).
        cfg: thresholds `min_asr_words`, `max_garbled_fraction`, `max_length_ratio`.
    Raises:
        RejectError: empty_asr, garbled_asr, too_few_asr_words, empty_denoised or
            denoised_length_mismatch (either direction).
    """
    if not asr_words:
        raise RejectError("empty_asr")
    garbled = garbled_fraction(asr_words)
    if garbled > cfg.max_garbled_fraction:
        raise RejectError("garbled_asr", f"{garbled:.2f} of words garbled > {cfg.max_garbled_fraction}")
    if len(asr_words) < cfg.min_asr_words:
        raise RejectError("too_few_asr_words", f"{len(asr_words)} < {cfg.min_asr_words}")
    if not den_words:
        raise RejectError("empty_denoised")
    ratio = len(den_words) / len(asr_words)
    if not 1 / cfg.max_length_ratio <= ratio <= cfg.max_length_ratio:
        raise RejectError("denoised_length_mismatch", f"{len(den_words)} denoised vs {len(asr_words)} ASR words")


def check_words(asr_words: Sequence[str], asr_times: np.ndarray, den_words: Sequence[str],
                cfg: AlignConfig) -> None:
    """Reject word lists that no speech gives: times that go back, or words of absurd length.

    Unordered times are rejected rather than sorted: the words carry the order of speech, and
    sorting them by time would make up a transcript nobody said, in exactly the clip order the
    pretext task learns. YouTube's ASR times never decrease, so a decrease is a damaged file.

    Args:
        asr_words, asr_times: cleaned ASR words and their times (`clean_asr_words`).
        den_words: denoised words (`denoised_words`).
        cfg: `max_word_chars`.
    Raises:
        RejectError: unordered_asr_times (naming the first word whose time goes back) or
            word_too_long.
    """
    back = np.flatnonzero(np.diff(asr_times) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise RejectError("unordered_asr_times", f"ASR word {i + 1} at {asr_times[i]:g}s comes after "
                                                 f"word {i} at {asr_times[i - 1]:g}s")
    for name, words in (("ASR", asr_words), ("denoised", den_words)):
        longest = max(words, key=len, default="")
        if len(longest) > cfg.max_word_chars:
            raise RejectError("word_too_long", f"a {name} word of {len(longest)} characters > {cfg.max_word_chars} "
                                               f"({longest[:40]!r}...)")


def check_alignment(alignment: Alignment, cfg: AlignConfig) -> None:
    """Reject a denoised text that is not a transcript of the ASR (e.g. another language).

    Raises:
        RejectError: asr_mismatch when the mean DTW cost per path step exceeds `max_cost_per_word`.
    """
    if alignment.cost > cfg.max_cost_per_word:
        raise RejectError("asr_mismatch", f"DTW cost {alignment.cost:.2f} per word > {cfg.max_cost_per_word}")


# --------------------------------------------------------------------------- alignment


def band_radius(n_asr: int, cfg: AlignConfig) -> int:
    """R = max(band_frac * len(asr), band_min), truncated to an int.

    Args:
        n_asr: number of ASR words.
        cfg: `band_frac` and `band_min`.
    Returns:
        The band half-width R.
    """
    return int(max(cfg.band_frac * n_asr, cfg.band_min))


def _prepare(asr_words: Sequence[str], asr_times: Any, den_words: Sequence[str],
             cfg: AlignConfig) -> tuple[list[str], np.ndarray, list[str], int]:
    """Validate the inputs, compute R and truncate the denoised words to len(asr) + R."""
    times = np.asarray(asr_times, dtype=np.float64)
    if len(asr_words) == 0:
        raise ValueError("cannot align: no ASR words")
    if len(den_words) == 0:
        raise ValueError("cannot align: no denoised words")
    if times.shape != (len(asr_words),):
        raise ValueError(f"cannot align: {len(asr_words)} ASR words but asr_times has shape {times.shape}")
    if not math.isfinite(cfg.outside_cost):
        raise ValueError(f"cannot align: outside_cost must be finite, got {cfg.outside_cost}")
    radius = band_radius(len(asr_words), cfg)
    return list(asr_words), times, list(den_words[: len(asr_words) + radius]), radius


def _codes(words: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique normalised words (first-seen order) and each word's index among them."""
    index: dict[str, int] = {}
    codes = [index.setdefault(normalise_word(w), len(index)) for w in words]
    return list(index), np.asarray(codes, dtype=np.intp)


# Rows per block: a block's cost, prefix-sum and accumulated-cost arrays stay ~2 MiB each
# (cache-sized) while the per-row Python overhead shrinks to a few numpy calls.
_BLOCK_CELLS = 1 << 18


@dataclass(frozen=True)
class _Layout:
    """Which cells each stored DTW row holds: column k of row i is cell (i, first(i) + k).

    The full layout stores all m columns (first(i) = 0); the band layout stores only the
    2R + 1 columns of the band (first(i) = i - R), so it costs O(n R) instead of O(n m).
    """

    n: int
    m: int
    radius: int
    banded: bool

    @property
    def width(self) -> int:
        return 2 * self.radius + 1 if self.banded else self.m

    @property
    def shift(self) -> int:  # how far first(i) moves per row
        return int(self.banded)

    def first(self, i: int) -> int:
        return i - self.radius if self.banded else 0


def _band_is_exact(n: int, m: int, radius: int, table: np.ndarray, outside: float) -> bool:
    """True when skipping the out-of-band cells cannot change the DTW result.

    If the end cell lies in the band and every in-band cost is below `outside`, any path
    stretch outside the band, between band cells e and f, costs `outside` per cell, while
    a monotone in-band path from e to f with no more cells exists (diagonal steps plus
    straight steps in one direction keep the offset j - i between its values at e and f).
    So every optimal path to every band cell stays in the band, band cells get their exact
    accumulated cost, and an out-of-band predecessor is always strictly worse, so it never
    wins nor ties in the backtrack. `table.max()` bounds the in-band costs.
    """
    return abs(n - m) <= radius and float(table.max()) < outside


def _cost_block(table: np.ndarray, asr_codes: np.ndarray, den_codes: np.ndarray, layout: _Layout,
                rows: range, outside: float) -> np.ndarray:
    """Stored cost cells of rows `rows`: edit distance inside the band, `outside` beyond.

    Columns that fall off the matrix (j < 0 or j >= m, band layout only) get cost 0;
    their accumulated cost is +inf on the left (from row 0 on, by induction) and never
    read on the right, so they never enter a real cell's minimum.
    """
    i = np.arange(rows.start, rows.stop)[:, None]
    j = layout.shift * (i - layout.radius) + np.arange(layout.width)[None, :]
    dist = table[asr_codes[i], den_codes[np.clip(j, 0, layout.m - 1)]]
    cost = np.where(np.abs(i - j) <= layout.radius, dist, outside)
    return np.where((j >= 0) & (j < layout.m), cost, 0.0)


def _dtw_row(prev: np.ndarray, cost: np.ndarray, cost_cumsum: np.ndarray, shift: int,
             out: np.ndarray) -> None:
    """One DTW row: x[k] = cost[k] + min(diag[k], up[k], x[k-1]), without a loop.

    `prev` is the previous row padded with +inf on both sides, so diag = prev[shift + k]
    and up = prev[shift + k + 1]. With a = min(diag, up) and S = cumsum(cost), unrolling
    x[k] = cost[k] + min(a[k], x[k-1]) gives x[k] = min over l <= k of
    (a[l] + cost[l] + ... + cost[k]) = S[k] + min over l <= k of (a[l] - S[l] + cost[l]):
    S plus a running minimum. Every finite term is an integer-valued float64 far below
    2**53, so this is exactly what the cell-by-cell loop computes.
    """
    width = len(cost)
    a = np.minimum(prev[shift:shift + width], prev[shift + 1:shift + 1 + width])
    a -= cost_cumsum
    a += cost
    np.minimum.accumulate(a, out=a)
    np.add(cost_cumsum, a, out=out)


def _moves(acc: np.ndarray, shift: int) -> np.ndarray:
    """Backtrack moves of rows 1.. of the padded block `acc` (row 0: the row above it).

    Ties go DIAG > UP > LEFT, matching the reference's comparisons.
    """
    width = acc.shape[1] - 2
    diag = acc[:-1, shift:shift + width]
    up = acc[:-1, shift + 1:shift + 1 + width]
    left = acc[1:, :width]
    step = np.where(up < diag, UP, DIAG)
    return np.where(left < np.minimum(diag, up), LEFT, step).astype(np.uint8)


def _dtw(table: np.ndarray, asr_codes: np.ndarray, den_codes: np.ndarray, layout: _Layout,
         outside: float) -> tuple[float, np.ndarray]:
    """Accumulated cost at the end cell, and the (n, width) matrix of backtrack moves."""
    n, width = layout.n, layout.width
    moves = np.full((n, width), LEFT, dtype=np.uint8)  # 1 byte per cell, not 8 for all of D
    # Rows are padded with +inf: column 0 is "left of the first cell", the last column is
    # "above the band's top edge".
    last = np.full(width + 2, np.inf)
    lo = -layout.first(0)
    hi = min(width, lo + layout.m)
    cost0 = _cost_block(table, asr_codes, den_codes, layout, range(0, 1), outside)[0]
    last[1 + lo:1 + hi] = np.cumsum(cost0[lo:hi])
    moves[0, lo] = START
    block = max(1, _BLOCK_CELLS // width)
    for start in range(1, n, block):
        rows = range(start, min(n, start + block))
        cost = _cost_block(table, asr_codes, den_codes, layout, rows, outside)
        cost_cumsum = np.cumsum(cost, axis=1)
        acc = np.full((len(rows) + 1, width + 2), np.inf)
        acc[0] = last
        for r in range(len(rows)):
            _dtw_row(acc[r], cost[r], cost_cumsum[r], layout.shift, acc[r + 1, 1:-1])
        moves[rows.start:rows.stop] = _moves(acc, layout.shift)
        last = acc[-1]
    return float(last[1 + layout.m - 1 - layout.first(n - 1)]), moves


def _backtrack(moves: np.ndarray, layout: _Layout) -> tuple[np.ndarray, int]:
    """Follow the moves from the end cell (n-1, m-1) to (0, 0).

    Returns:
        (asr_index, path_length): for each denoised word j, the smallest ASR index i
        with (i, j) on the path (the path is monotone, so that is the last one the
        backtrack visits in column j), and the number of cells on the path.
    """
    asr_index = np.empty(layout.m, dtype=np.int64)
    i, j, length = layout.n - 1, layout.m - 1, 0
    while True:  # O(n + m) steps: a Python loop is fine here
        asr_index[j] = i
        length += 1
        move = moves[i, j - layout.first(i)]
        if move == START:
            return asr_index, length
        if move != LEFT:
            i -= 1
        if move != UP:
            j -= 1


def align_asr_to_denoised(asr_words: Sequence[str], asr_times: Any, den_words: Sequence[str],
                          cfg: AlignConfig) -> Alignment:
    """Give every denoised word a time by DTW-aligning it to the timed ASR words.

    Follows docs/method.md ('ASR alignment'): R = int(max(band_frac * len(asr), band_min)); the denoised words
    are truncated to len(asr) + R; cost C[i, j] = Levenshtein distance between
    `normalise_word(asr[i])` and `normalise_word(den[j])` if |i - j| <= R, else
    `cfg.outside_cost`; DTW with steps (i-1, j-1), (i-1, j), (i, j-1); the backtrack
    from (n-1, m-1) prefers, on ties, the diagonal, then (i-1, j), then (i, j-1). Each
    denoised word is attached to the first (smallest i) ASR word paired with it on the
    path and inherits its time.

    Vectorised, and identical to `align_reference`. When the end cell is in the band
    and all in-band costs are below `outside_cost` (the usual case) only the band is
    computed, which provably gives the same result; otherwise the whole matrix is.

    Args:
        asr_words: cleaned ASR words (`clean_asr_words`).
        asr_times: their start times in seconds, same length.
        den_words: denoised words (`denoised_words`).
        cfg: band and cost settings.
    Returns:
        The Alignment of the (truncated) denoised words.
    Raises:
        ValueError: if either word list is empty, the times do not match the words, or
            outside_cost is not finite.
    """
    asr, times, den, radius = _prepare(asr_words, asr_times, den_words, cfg)
    asr_vocab, asr_codes = _codes(asr)
    den_vocab, den_codes = _codes(den)
    # Unique words only: a transcript has several times fewer distinct words than tokens,
    # so the compiled distance table is much smaller than the cost matrix it feeds.
    table = process.cdist(asr_vocab, den_vocab, scorer=Levenshtein.distance, dtype=np.int32, workers=1)
    outside = float(cfg.outside_cost)
    n, m = len(asr), len(den)
    layout = _Layout(n, m, radius, banded=_band_is_exact(n, m, radius, table, outside))
    total, moves = _dtw(table, asr_codes, den_codes, layout, outside)
    asr_index, length = _backtrack(moves, layout)
    return Alignment(words=den, times=times[asr_index], asr_index=asr_index, cost=total / length)


# --------------------------------------------------------------------------- reference


def _levenshtein_py(a: str, b: str) -> int:
    """Textbook two-row edit distance (unit insert/delete/substitute costs)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def align_reference(asr_words: Sequence[str], asr_times: Any, den_words: Sequence[str],
                    cfg: AlignConfig) -> Alignment:
    """Cell-by-cell pure-Python version of `align_asr_to_denoised`, for tests and benchmarks.

    Same definition, same tie-break, same result; it builds the full cost and
    accumulated-cost matrices with nested loops and backtracks by comparing the stored
    accumulated costs.

    Args:
        asr_words: cleaned ASR words.
        asr_times: their start times in seconds.
        den_words: denoised words.
        cfg: band and cost settings.
    Returns:
        The Alignment of the (truncated) denoised words.
    Raises:
        ValueError: as `align_asr_to_denoised`.
    """
    asr, times, den, radius = _prepare(asr_words, asr_times, den_words, cfg)
    na = [normalise_word(w) for w in asr]
    nd = [normalise_word(w) for w in den]
    n, m = len(na), len(nd)
    outside = float(cfg.outside_cost)
    acc = [[0.0] * m for _ in range(n)]
    for i in range(n):
        for j in range(m):
            c = float(_levenshtein_py(na[i], nd[j])) if abs(i - j) <= radius else outside
            if i == 0 and j == 0:
                acc[i][j] = c
            elif i == 0:
                acc[i][j] = c + acc[i][j - 1]
            elif j == 0:
                acc[i][j] = c + acc[i - 1][j]
            else:
                acc[i][j] = c + min(acc[i - 1][j - 1], acc[i - 1][j], acc[i][j - 1])
    asr_index = np.empty(m, dtype=np.int64)
    i, j, length = n - 1, m - 1, 0
    while True:
        asr_index[j] = i
        length += 1
        if i == 0 and j == 0:
            break
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            diag, up, left = acc[i - 1][j - 1], acc[i - 1][j], acc[i][j - 1]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
    return Alignment(words=den, times=times[asr_index], asr_index=asr_index, cost=acc[-1][-1] / length)
