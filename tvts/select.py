"""Checkpoint selection: score every epoch-end checkpoint on the pretraining *validation* split.

Never on a downstream test set. The trainer already ran that very validation pass (same split,
deterministic views and masks, same weights) just before saving each epoch checkpoint and kept
it in the run's manifest; those scores are reused unless `select.rescore` is set, and any
checkpoint without one is scored here. The winner's weights (no optimiser) become `best.pt`,
every candidate's scores go to `selection.json` and MLflow, and the winner is registered
in the MLflow model registry with the alias `best`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tvts.config import from_dict, require
from tvts.models.text import TextSpec
from tvts.models.tvts import TVTS
from tvts.train import checkpoint as C
from tvts.train import distributed as D
from tvts.train.config import PretrainConfig
from tvts.train.data import ResumableBatchSampler, WindowDataset
from tvts.train.loop import build_model, evaluate, make_loader, view_config

# loss_recon: VideoMAE's; step: the last epoch checkpoint, whatever the val scores (the
# fixed-budget protocol: every method evaluated after the same number of steps)
METRICS = ("sort_exact", "sort_acc", "v2t_r1", "t2v_r1", "loss_sort", "loss_align", "loss_recon", "step")


@dataclass(frozen=True)
class SelectConfig:
    metric: str = "sort_exact"   # exact-order sort accuracy, as the paper's code validates
    register: bool = True        # register the winner in the MLflow model registry (alias `best`)
    model_name: str = ""         # registry name; "" = tvts-<exp>
    rescore: bool = False        # score every checkpoint again instead of reusing the trainer's val pass

    def check(self, where: str) -> None:
        require(self.metric in METRICS, where, "metric", f"must be one of {', '.join(METRICS)}")

    @property
    def higher_is_better(self) -> bool:
        return not self.metric.startswith("loss")


def model_from_state(state: dict, device: torch.device | str = "cpu") -> tuple[TVTS, PretrainConfig]:
    """Rebuild the model a checkpoint (or best.pt) describes and load its weights.

    A VideoMAE decoder comes back too (it is in the weights) but frozen: no evaluation uses it,
    and a fine-tuning evaluation under DDP would otherwise wait for its gradients forever.
    """
    cfg = from_dict(PretrainConfig, state["config"], "checkpoint.config")
    model = build_model(cfg, TextSpec(**state["text_spec"]), load_pretrained_text=False)
    model.load_state_dict(state["model"])
    if model.decoder is not None:
        model.decoder.requires_grad_(False)
    return model.to(device).eval(), cfg


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[TVTS, PretrainConfig]:
    """A TVTS model from any tvts-workflow checkpoint (`weights_only=True`): what evaluation calls."""
    return model_from_state(C.load(path), device)


def score(path: Path, shard_dir: Path, env: D.DistEnv, workers: int | None = None) -> dict[str, float]:
    """Validation metrics of one checkpoint (deterministic views: centre frames and crops, fixed masks)."""
    state = C.load(path)
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
    state = C.load(src)
    keep = {k: state[k] for k in ("model", "config", "text_spec", "step", "steps_per_epoch", "run_key")}
    C.save(dst, keep | {"source": src.name, "selected_by": metric, "score": value})
