"""Stage `pretrain`: TVTS pretraining on the window shards (torchrun launches one process per GPU).

Writes `<out>/ckpt/` (step and epoch-end checkpoints), `<out>/log.jsonl` (every logged
metric) and, when training completes, `<out>/manifest.json` (the rule's declared output).
Rerunning an interrupted job resumes from the newest valid checkpoint of the same config
and data; a completed run, or one with another config, starts afresh.
Exit code 75 means "preempted, checkpoint written: run me again".
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from tvts import io, tracking
from tvts.config import load_sections
from tvts.io import dumps
from tvts.models.init import initialise
from tvts.models.text import TextSpec, build_spec
from tvts.stages.common import add_common_args, setup_logging
from tvts.train import checkpoint as C
from tvts.train import distributed as D
from tvts.train.config import PretrainConfig
from tvts.train.data import ResumableBatchSampler, WindowDataset
from tvts.train.loop import (Preemption, TrainState, build_model, build_optimizer, build_scheduler, evaluate,
                             freeze_unused, make_loader, train_one_epoch, view_config, wrap)

log = logging.getLogger("tvts.pretrain")
SECTIONS = {"pretrain": PretrainConfig}
PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on SIGTERM/SIGUSR1, rerun to resume


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts pretrain", description=__doc__)
    p.add_argument("--shards", required=True, help="shard folder from shard_clips")
    p.add_argument("--out", required=True, help="output folder (results/<exp>/pretrain)")
    p.add_argument("--text-only", action="store_true",
                   help="train the text-only sort baseline (the sort head sees transcripts, no video)")
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")
    add_common_args(p)
    return p


def run_key(cfg: PretrainConfig, shard_dir: Path, text_only: bool) -> str:
    """Identifies a run: its config and the exact shards. Only matching checkpoints are resumed."""
    h = hashlib.sha256(dumps({"pretrain": cfg, "text_only": text_only}).encode())
    h.update((shard_dir / "manifest.json").read_bytes())
    return h.hexdigest()[:16]


def text_spec_for(cfg: PretrainConfig, train: WindowDataset, env: D.DistEnv) -> TextSpec:
    """Rank 0 trains / reads the tokenizer; every rank gets the same spec."""
    spec = build_spec(cfg.model.text, train.texts()) if env.is_main else None
    return D.broadcast_object(spec)


def start_fresh(ckpt_dir: Path, env: D.DistEnv) -> None:
    if env.is_main and ckpt_dir.exists():
        for p in C.candidates(ckpt_dir):
            p.unlink()
        (ckpt_dir.parent / "log.jsonl").unlink(missing_ok=True)
    D.barrier()


class Writer:
    """Rank 0's side effects: checkpoints, log.jsonl and MLflow metrics."""

    def __init__(self, out: Path, st: TrainState, cfg: PretrainConfig, spec: TextSpec, key: str,
                 env: D.DistEnv, mlrun: tracking.StageRun | None):
        self.out, self.st, self.cfg, self.spec, self.key, self.env, self.mlrun = out, st, cfg, spec, key, env, mlrun
        self.ckpt_dir = out / "ckpt"

    def metrics(self, values: dict[str, float], step: int) -> None:
        if not self.env.is_main:
            return
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "time": time.time()} | values) + "\n")
        if self.mlrun:
            self.mlrun.log_metrics(values, step=step)
        log.info("step %d %s", step, " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def state(self, rng_ranks: list[dict], complete: bool = False) -> dict:
        st = self.st
        return {"model": st.model.state_dict(), "optimizer": st.optimizer.state_dict(),
                "scheduler": st.scheduler.state_dict(), "rng": rng_ranks[0], "rng_ranks": rng_ranks, "step": st.step,
                "steps_per_epoch": st.steps_per_epoch, "config": json.loads(dumps(self.cfg)),
                "text_spec": self.spec.as_dict(), "run_key": self.key, "complete": complete,
                "history": st.history, "mlflow_run_id": self.mlrun.run_id if self.mlrun else ""}

    def step_checkpoint(self, force: bool = False) -> None:
        """Every `ckpt_every` steps, or now (preemption; `force` is the same on every rank)."""
        if not (force or self.st.step % self.cfg.runtime.ckpt_every == 0):
            return
        rng_ranks = D.gather_objects(C.rng_state())  # every rank's dropout stream, for an exact resume
        if self.env.is_main:
            C.save(self.ckpt_dir / C.step_name(self.st.step), self.state(rng_ranks))
            C.prune(self.ckpt_dir, self.cfg.runtime.keep_last)
        D.barrier()

    def epoch_checkpoint(self, epoch: int, complete: bool) -> Path:
        path = self.ckpt_dir / C.epoch_name(epoch, self.st.step)
        rng_ranks = D.gather_objects(C.rng_state())
        if self.env.is_main:
            C.save(path, self.state(rng_ranks, complete))
            C.prune(self.ckpt_dir, self.cfg.runtime.keep_last)
        D.barrier()
        return path


def restore(st: TrainState, state: dict, env: D.DistEnv) -> None:
    st.model.load_state_dict(state["model"])
    st.optimizer.load_state_dict(state["optimizer"])
    st.scheduler.load_state_dict(state["scheduler"])
    ranks = state.get("rng_ranks") or []
    C.set_rng_state(ranks[env.rank] if len(ranks) == env.world else state["rng"])
    st.step, st.history = int(state["step"]), list(state["history"])


def trim_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        io.atomic_write_text(path, "".join(line + "\n" for line in keep))


def find_resume(ckpt_dir: Path, key: str, env: D.DistEnv) -> tuple[Path, dict] | None:
    """The checkpoint an interrupted run of this config and data left, or None (then start afresh)."""
    found = C.newest_valid(ckpt_dir, key) if ckpt_dir.exists() else None
    if found and not found[1]["complete"]:
        return found
    start_fresh(ckpt_dir, env)
    return None


def build_data(shard_dir: Path, cfg: PretrainConfig, env: D.DistEnv, resume: tuple[Path, dict] | None):
    """(train set, val set, text spec): the spec comes from the checkpoint when resuming."""
    view = view_config(cfg)
    train_ds = WindowDataset(shard_dir, "train", view, TextSpec("", ""), cfg.seed)
    train_ds.spec = TextSpec(**resume[1]["text_spec"]) if resume else text_spec_for(cfg, train_ds, env)
    return train_ds, WindowDataset(shard_dir, "val", view, train_ds.spec, cfg.seed), train_ds.spec


def build_state(cfg: PretrainConfig, spec: TextSpec, env: D.DistEnv, steps_per_epoch: int,
                resume: tuple[Path, dict] | None) -> TrainState:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, spec)
    if resume is None:
        initialise(model, cfg.init)
    if env.world > 1:  # same weights everywhere (above), but each rank its own dropout masks
        torch.manual_seed(cfg.seed + 100_003 * (env.rank + 1))
    model.to(env.device)
    freeze_unused(model, cfg)
    opt = build_optimizer(model, cfg)
    st = TrainState(model, model, opt, build_scheduler(opt, steps_per_epoch, cfg), steps_per_epoch)
    if resume:
        restore(st, resume[1], env)
        log.info("resuming from %s (step %d)", resume[0].name, st.step)
    st.engine = wrap(model, cfg, env)
    return st


def train(args: argparse.Namespace, cfg: PretrainConfig, env: D.DistEnv, out: Path) -> dict:
    """Build, train every remaining epoch, write the manifest (rank 0). Returns the manifest."""
    key = run_key(cfg, Path(args.shards), args.text_only)
    resume = find_resume(out / "ckpt", key, env)
    train_ds, val_ds, spec = build_data(Path(args.shards), cfg, env, resume)
    sampler = ResumableBatchSampler(len(train_ds), cfg.data.batch_size, env.rank, env.world, cfg.seed)
    steps_per_epoch = sampler.steps_per_epoch() // cfg.optim.grad_accum
    if steps_per_epoch < 1:
        raise SystemExit(f"pretrain: {len(train_ds)} train windows are fewer than one global batch "
                         f"(pretrain.data.batch_size x {env.world} ranks x grad_accum); lower the batch size")
    st = build_state(cfg, spec, env, steps_per_epoch, resume)
    if resume and env.is_main:
        trim_log(out / "log.jsonl", st.step)
    val_sampler = ResumableBatchSampler(len(val_ds), cfg.data.eval_batch_size, env.rank, env.world, cfg.seed,
                                        shuffle=False, drop_last=False)
    val_loader = make_loader(val_ds, val_sampler, cfg, env)
    stage = "text_only_baseline" if args.text_only else "pretrain"
    run_id = (resume[1].get("mlflow_run_id") or None) if resume else None
    ctx = (tracking.stage_run(stage, args.exp, {"pretrain": cfg, "text_only": args.text_only}, rule=args.rule,
                              resume_run_id=run_id) if env.is_main else contextlib.nullcontext())
    with ctx as mlrun:
        w = Writer(out, st, cfg, spec, key, env, mlrun)
        preempt = Preemption()
        try:
            epochs = run_epochs(st, sampler, train_ds, val_loader, cfg, env, w, preempt)
        finally:
            preempt.restore()
        if not env.is_main:
            return {}
        counts = {"train_windows": len(train_ds), "val_windows": len(val_ds), "world_size": env.world,
                  "steps": st.step, "steps_per_epoch": steps_per_epoch, "epochs": cfg.optim.epochs}
        mlrun.log_metrics({f"final/{k}": v for k, v in (st.history[-1] if st.history else {}).items()}, step=st.step)
        manifest = write_outputs(out, args, cfg, counts, epochs, st)
        mlrun.log_artifact(out / "manifest.json")
        return manifest


def run_epochs(st: TrainState, sampler: ResumableBatchSampler, train_ds: WindowDataset, val_loader,
               cfg: PretrainConfig, env: D.DistEnv, w: Writer, preempt: Preemption) -> list[str]:
    """Train the remaining epochs; raises SystemExit(PREEMPTED) after checkpointing on a signal."""
    for epoch in range(st.epoch, cfg.optim.epochs):
        sampler.set_epoch(epoch, start_step=st.step_in_epoch * cfg.optim.grad_accum)
        loader = make_loader(train_ds, sampler, cfg, env)
        if not train_one_epoch(st, loader, cfg, env, preempt, w.metrics, w.step_checkpoint):
            log.warning("preempted at step %d: checkpoint written, exiting with %d", st.step, PREEMPTED)
            raise SystemExit(PREEMPTED)
        # The bare model: ranks may hold unequal numbers of val batches, and a DDP forward is a
        # collective (buffer sync), so evaluating through DDP deadlocks.
        metrics = evaluate(st.model, val_loader, cfg, env)
        if env.is_main:
            st.history.append({"epoch": epoch, "step": st.step} | metrics)
            w.metrics({f"val/{k}": v for k, v in metrics.items()} | {"epoch": epoch}, st.step)
        w.epoch_checkpoint(epoch, complete=epoch == cfg.optim.epochs - 1)
    return [p.name for p in C.epoch_checkpoints(w.ckpt_dir)]


def write_outputs(out: Path, args, cfg: PretrainConfig, counts: dict, epochs: list[str], st: TrainState) -> dict:
    manifest = {"stage": "text_only_baseline" if args.text_only else "pretrain",
                "inputs": {"shards": args.shards}, "config": {"pretrain": cfg, "text_only": args.text_only},
                "counts": counts, "outputs": {"epoch_checkpoints": [f"ckpt/{e}" for e in epochs], "log": "log.jsonl"},
                "history": st.history, "versions": io.library_versions()}
    io.atomic_write_json(out / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)["pretrain"]
    if args.text_only:
        cfg = text_only_variant(cfg)
    env = D.init_distributed(use_cuda=False if args.cpu else None)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        train(args, cfg, env, out)
    finally:
        D.cleanup()
    return 0


def text_only_variant(cfg: PretrainConfig) -> PretrainConfig:
    """The text-only sort baseline: no video, sort loss only, and the text encoder trained by it.
    It is a TVTS run whatever `method` the experiment pretrains with (it never sees video)."""
    from dataclasses import replace

    return replace(cfg, method="tvts", loss=replace(cfg.loss, sort_video=False, detach_text=False, align_weight=0.0,
                                     sort_weight=max(cfg.loss.sort_weight, 1.0)))
