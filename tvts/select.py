"""Checkpoint selection: score every epoch-end checkpoint on the pretraining *validation* split.

Never on a downstream test set. The trainer already ran that very validation pass (same split,
deterministic views and masks, same weights) just before saving each epoch checkpoint and kept
it in the run's manifest; those scores are reused unless `select.rescore` is set, and any
checkpoint without one is scored here. The winner's weights (no optimiser) become `best.pt`,
every candidate's scores go to `selection.json` and MLflow, and the winner is registered
in the MLflow model registry with the alias `best`.
"""
from __future__ import annotations

from pathlib import Path

from tvts.models.load import model_from_state
from tvts.models.text import TextSpec
from tvts.select_config import METRICS, SelectConfig
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train.data import ResumableBatchSampler, WindowDataset
from tvts.train.pretext import evaluate, make_loader, view_config


def score(path: Path, shard_dir: Path, env: dist.DistEnv, workers: int | None = None) -> dict[str, float]:
    """Validation metrics of one checkpoint (deterministic views: centre frames and crops, fixed masks)."""
    state = checkpoint.load(path)
    model, cfg = model_from_state(state, env.device)
    val = WindowDataset(shard_dir, "val", view_config(cfg), TextSpec(**state["text_spec"]), cfg.seed)
    sampler = ResumableBatchSampler(len(val), cfg.data.eval_batch_size, env.rank, env.world, cfg.seed,
                                    shuffle=False, drop_last=False)
    loader = make_loader(val, sampler, cfg, env, workers)
    return evaluate(model, loader, cfg, env) | {"step": float(state["step"])}


def recorded_scores(manifest: dict, shards: str | Path) -> dict[int, dict[str, float]]:
    """The trainer's own end-of-epoch validation metrics, by step (as `score` returns them).

    Bit-identical to scoring the checkpoint again (checked on the demo's 16 checkpoints and by
    tests/test_workflow.py); empty when the run was validated on other shards than `shards`.
    """
    if Path(manifest["inputs"]["shards"]).resolve() != Path(shards).resolve():
        return {}
    return {int(h["step"]): {k: float(v) for k, v in h.items() if k != "epoch"}
            for h in manifest.get("history", [])}


def score_candidates(candidates: list[Path], recorded: dict[int, dict[str, float]], shard_dir: Path,
                     env: dist.DistEnv, workers: int | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Every candidate's scores (by file name) and where each came from ("trainer" or "scored").

    A candidate the trainer validated (`recorded`, by step) keeps those scores; others are scored here.
    """
    scores, source = {}, {}
    for path in candidates:
        kept = recorded.get(checkpoint.step_of(path.name))
        source[path.name] = "trainer" if kept is not None else "scored"
        scores[path.name] = kept if kept is not None else score(path, shard_dir, env, workers)
    return scores, source


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


def write_best(src: Path, dst: Path, metric: str, value: float) -> None:
    """`best.pt`: weights, config and text spec only (no optimiser), written atomically."""
    state = checkpoint.load(src)
    keep = {k: state[k] for k in ("model", "config", "text_spec", "step", "steps_per_epoch", "run_key")}
    checkpoint.save(dst, keep | {"source": src.name, "selected_by": metric, "score": value})
