"""Intervals for the grid's evaluation metrics: bootstrap over test clips, paired by seed.

Every method of a grid seed shares that seed's inits, data and data order, and every method is
tested on the same clips. So a difference between two methods is estimated per seed and averaged,
and its interval resamples the *test clips*: one draw of clip indices per replicate, applied to
every seed and both methods (docs/results.md, "Pre-registered"). The interval measures test-set
noise given the trained models; the seed spread is reported beside it, not folded in.

The evaluations write, per test clip, 1.0 / 0.0 for each accuracy-type metric (nan where a clip
is unreadable or not scored, e.g. within-pair on an unpaired class; 0.5 where an arrow-of-time
clip is right in one direction only): `per_clip` in their JSON (tvts/eval/linear.py, score_logits).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPLICATES = 10_000
LEVEL = 0.95
SEED = 0
_CHUNK = 1000  # replicates per block: a (chunk, clips) count matrix in memory


@dataclass(frozen=True)
class Interval:
    """An estimate in percent with its bootstrap interval [lo, hi]."""

    value: float
    lo: float
    hi: float

    def verdict(self) -> str:
        """The pre-registered rule for a difference: ahead / behind when the interval excludes 0."""
        return "ahead" if self.lo > 0 else "behind" if self.hi < 0 else "level"

    def format(self, digits: int = 1) -> str:
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def _weighted_means(counts: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Per replicate, the mean of the scored hits weighted by how often each clip was drawn: (R,)."""
    scored = ~np.isnan(hits)
    weight = counts[:, scored]
    total = weight.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weight @ hits[scored] / total, np.nan)


def _replicates(per_seed: list[tuple[np.ndarray, np.ndarray | None]], replicates: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of mean over seeds of 100 * (mean(a) - mean(b)) (b None: of mean(a))."""
    n = len(per_seed[0][0])
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, replicates, _CHUNK):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(_CHUNK, replicates - start)).astype(np.float64)
        diffs = [_weighted_means(counts, a) - (0.0 if b is None else _weighted_means(counts, b)) for a, b in per_seed]
        out.append(100.0 * np.mean(diffs, 0))
    return np.concatenate(out)


def _interval(point: float, reps: np.ndarray, level: float) -> Interval:
    reps = reps[~np.isnan(reps)]
    if len(reps) == 0 or np.isnan(point):
        return Interval(point, float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return Interval(point, float(lo), float(hi))


def _mean_pct(hits: np.ndarray) -> float:
    scored = hits[~np.isnan(hits)]
    return 100.0 * float(scored.mean()) if len(scored) else float("nan")


def _check(arrays: list[np.ndarray]) -> None:
    if not arrays or len({len(a) for a in arrays}) != 1:
        raise ValueError("per-clip hits of unequal length: the runs were not tested on the same clips")


def metric_interval(per_seed: list[np.ndarray], replicates: int = REPLICATES, level: float = LEVEL,
                    seed: int = SEED) -> Interval:
    """A metric's mean over seeds with its 95 % interval over test clips.

    Args:
        per_seed: each seed's per-clip hits (same clips, same order).
    """
    arrays = [np.asarray(h, np.float64) for h in per_seed]
    _check(arrays)
    point = float(np.mean([_mean_pct(h) for h in arrays]))
    return _interval(point, _replicates([(h, None) for h in arrays], replicates, seed), level)


def paired_difference(a: list[np.ndarray], b: list[np.ndarray], replicates: int = REPLICATES,
                      level: float = LEVEL, seed: int = SEED) -> Interval:
    """mean over seeds of (a_s - b_s), in points, with its paired 95 % interval over test clips.

    Args:
        a, b: per seed (paired by position: same seed), each method's per-clip hits.
    """
    arrays_a, arrays_b = [np.asarray(h, np.float64) for h in a], [np.asarray(h, np.float64) for h in b]
    if len(arrays_a) != len(arrays_b):
        raise ValueError(f"paired difference needs the same seeds: {len(arrays_a)} against {len(arrays_b)}")
    _check(arrays_a + arrays_b)
    point = float(np.mean([_mean_pct(x) - _mean_pct(y) for x, y in zip(arrays_a, arrays_b)]))
    return _interval(point, _replicates(list(zip(arrays_a, arrays_b)), replicates, seed), level)


def load_per_clip(path: str | Path) -> dict[str, np.ndarray] | None:
    """An evaluation JSON's per-clip hits, metric -> (N,) float with nan; None without any.

    The clip ids are returned under "ids" as an object array, so callers can check two runs
    were tested on the same clips.
    """
    path = Path(path)
    if not path.is_file():
        return None
    per_clip = json.loads(path.read_text()).get("per_clip")
    if not per_clip or "ids" not in per_clip:
        return None
    out: dict[str, np.ndarray] = {"ids": np.array(per_clip["ids"], dtype=object)}
    for metric, hits in per_clip.items():
        if metric != "ids":
            out[metric] = np.array([np.nan if h is None else h for h in hits], np.float64)
    return out
