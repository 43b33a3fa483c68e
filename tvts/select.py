"""Checkpoint selection: score every epoch-end checkpoint on the pretraining *validation* split.

Never on a downstream test set. The trainer already ran that very validation pass (same split,
deterministic views and masks, same weights) just before saving each epoch checkpoint and kept
it in the run's manifest; those scores are reused unless `select.rescore` is set, and any
checkpoint without one is scored here. The winner's weights (no optimiser) become `best.pt`,
every candidate's scores go to `selection.json` and MLflow, and the winner is registered
in the MLflow model registry with the alias `best`.
"""
from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path
from typing import Callable

from tvts.io import CheckpointError
from tvts.data.shardset import ShardSet, open_shard_set
from tvts.models.load import model_from_state
from tvts.models.text import TextSpec
from tvts.select_config import METRICS, SelectConfig
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train.data import ResumableBatchSampler, WindowDataset
from tvts.train.pretext import evaluate, make_loader
from tvts.train.pretrain import data_view

log = logging.getLogger("tvts.select")


def score(path: Path, shards: str | Path | ShardSet, env: dist.DistEnv, workers: int | None = None
          ) -> dict[str, float]:
    """Validation metrics of one checkpoint (deterministic views: centre frames and crops, fixed masks).

    Args:
        shards: a shard set spec (tvts.data.shardset) or an opened set; its val split is scored.
    """
    state = checkpoint.load(path)
    model, cfg = model_from_state(state, env.device, path)
    val = WindowDataset(shards, "val", data_view(cfg, env.device), TextSpec(**state["text_spec"]), cfg.seed)
    sampler = ResumableBatchSampler(len(val), cfg.data.eval_batch_size, env.rank, env.world, cfg.seed,
                                    shuffle=False, drop_last=False)
    loader = make_loader(val, sampler, cfg, env, workers)
    return evaluate(model, loader, cfg, env) | {"step": float(state["step"])}


def recorded_scores(manifest: dict, shards: str | Path | ShardSet) -> dict[int, dict[str, float]]:
    """The trainer's own end-of-epoch validation metrics, by step (as `score` returns them).

    Bit-identical to scoring the checkpoint again (checked on the demo's 16 checkpoints and by
    tests/test_workflow.py); empty when the run was validated on other shards than `shards`: by
    the set's fingerprint (the same data served from elsewhere matches), else by path.
    """
    if not same_shards(manifest["inputs"], shards):
        return {}
    return {int(h["step"]): {k: float(v) for k, v in h.items() if k != "epoch"}
            for h in manifest.get("history", [])}


def same_shards(inputs: dict, shards: str | Path | ShardSet) -> bool:
    """Whether a pretraining manifest's `inputs` name these shards."""
    opened = shards if isinstance(shards, ShardSet) else open_shard_set(shards)
    if "shards_fingerprint" in inputs:
        return inputs["shards_fingerprint"] == opened.fingerprint()
    return Path(inputs["shards"]).resolve() == Path(opened.spec).resolve()  # a manifest from before set files


def check_readable(path: Path) -> None:
    """Cheap check that a checkpoint is whole: its zip directory (the file's end) reads.

    A file truncated after the trainer validated it keeps its recorded scores, so without this
    it could win and fail only when `best.pt` is written.

    Raises:
        CheckpointError: naming the file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt: {err})") from err


def score_candidates(candidates: list[Path], recorded: dict[int, dict[str, float]], shards: str | Path | ShardSet,
                     env: dist.DistEnv | None, workers: int | None = None
                     ) -> tuple[dict[str, dict], dict[str, str], dict[str, str]]:
    """Every readable candidate's scores (by file name), where each came from, and the unreadable.

    A candidate the trainer validated (`recorded`, by step) keeps those scores; others are scored
    here. An unreadable one is skipped with a warning, never scored.

    Returns:
        (scores, source: "trainer" or "scored", unreadable: name -> why).
    """
    scores, source, unreadable = {}, {}, {}
    for path in candidates:
        kept = recorded.get(checkpoint.step_of(path.name))
        try:
            scores[path.name] = _candidate_score(path, kept, shards, env, workers)
        except (CheckpointError, FileNotFoundError) as err:
            log.warning("skipping unreadable checkpoint %s: %s", path.name, err)
            unreadable[path.name] = str(err)
            continue
        source[path.name] = "scored" if kept is None else "trainer"
    return scores, source, unreadable


def _candidate_score(path: Path, kept: dict[str, float] | None, shards: str | Path | ShardSet, env: dist.DistEnv | None,
                     workers: int | None) -> dict[str, float]:
    if kept is None:
        return score(path, shards, env, workers)
    check_readable(path)
    return kept


def pick(scores: dict[str, dict[str, float]], cfg: SelectConfig) -> str:
    """The best checkpoint name; ties go to the earlier checkpoint."""
    sign = 1.0 if cfg.higher_is_better else -1.0
    names = sorted(scores)
    lacking = [n for n in names if cfg.metric not in scores[n]]
    if lacking:  # e.g. sort_exact for a VideoMAE run, which reports loss_recon
        have = ", ".join(sorted(k for k in scores[lacking[0]] if k in METRICS))
        raise ValueError(f"select.metric: {lacking[0]} has no {cfg.metric!r} score (it has: {have}); "
                         "pick a metric its pretraining method reports")
    return max(names, key=lambda n: (sign * scores[n][cfg.metric], -names.index(n)))


def choose_best(scores: dict[str, dict[str, float]], unreadable: dict[str, str], cfg: SelectConfig,
                ckpt_dir: Path, dst: Path, write: Callable[[Path, Path, str, float], None] | None = None
                ) -> tuple[str, dict[str, str]]:
    """Pick the best checkpoint and write it to `dst`; one that fails to load there is skipped.

    Args:
        scores, unreadable: from `score_candidates`.
        ckpt_dir: the folder of the checkpoint files.
        write: how the winner is written (default `write_best`).
    Returns:
        The winner's name, and every unreadable checkpoint (those found here added).
    Raises:
        CheckpointError: when no candidate is readable and finite (scores and weights).
    """
    write = write or write_best
    left, unreadable = dict(scores), dict(unreadable)
    for name, values in scores.items():  # a diverged epoch validates to NaN: never a winner
        value = values.get(cfg.metric, 0.0)
        if not math.isfinite(value):
            unreadable[name] = f"{ckpt_dir / name}: non-finite validation {cfg.metric} ({value}); refusing a diverged checkpoint"
            log.warning("refusing %s", unreadable[name])
            del left[name]
    while left:
        best = pick(left, cfg)
        try:
            write(ckpt_dir / best, dst, cfg.metric, left[best][cfg.metric])
            return best, unreadable
        except CheckpointError as err:
            log.warning("skipping unreadable checkpoint %s: %s", best, err)
            unreadable[best] = str(err)
            del left[best]
    raise CheckpointError(f"{ckpt_dir}: no readable candidate checkpoint with finite weights and scores "
                          f"({len(unreadable)} refused)")


def write_best(src: Path, dst: Path, metric: str, value: float) -> None:
    """`best.pt`: weights, config and text spec only (no optimiser), written atomically.

    Raises:
        CheckpointError: `src` is unreadable, or its weights are not finite (NonFiniteWeights).
    """
    state = checkpoint.load(src)
    checkpoint.require_finite(state["model"], str(src))
    keep = {k: state[k] for k in ("model", "config", "text_spec", "step", "steps_per_epoch", "run_key")}
    checkpoint.save(dst, keep | {"source": src.name, "selected_by": metric, "score": value})
