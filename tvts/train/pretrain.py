"""The pretraining job: the TVTS pretext (or VideoMAE, or the text-only baseline) on window shards.

Writes `<out>/ckpt/` (step and epoch-end checkpoints), `<out>/log.jsonl` (every logged metric)
and, when training completes, `<out>/manifest.json`. A rerun resumes from the newest valid
checkpoint of the same run key (config + shards), a run that died after its final checkpoint
only writes its manifest; a finalised run (`checkpoint.FINALISED`), or one with another key,
starts afresh. Only rank 0 writes files and talks to MLflow.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import torch

from tvts import io
from tvts.config import ConfigError
from tvts.io import dumps
from tvts.models.init import initialise
from tvts.models.load import build_model
from tvts.models.text import TextSpec, build_spec
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.data.shardset import ShardSet, open_shard_set
from tvts.train.data import ResumableBatchSampler, ViewConfig, WindowDataset
from tvts.train.pretext import (Meter, build_optimizer, build_scheduler, evaluate, freeze_unused, losses,
                                make_loader, run_model, to_device, train_accuracy, view_config, wrap)
from tvts.train.trainer import Budget, TrainState, bad_sample_counts, run_epochs

log = logging.getLogger("tvts.pretrain")


def run_key(cfg: PretrainConfig, shards: ShardSet, text_only: bool) -> str:
    """Identifies a run: its config and the exact shards (the set's fingerprint, wherever they are
    served from). Only matching checkpoints are resumed."""
    h = hashlib.sha256(dumps({"pretrain": cfg, "text_only": text_only}).encode())
    h.update(shards.fingerprint().encode())
    return h.hexdigest()[:16]


def text_only_variant(cfg: PretrainConfig) -> PretrainConfig:
    """The text-only sort baseline: no video, sort loss only, and the text encoder trained by it.
    It is a TVTS run whatever `method` the experiment pretrains with (it never sees video)."""
    return replace(cfg, method="tvts", loss=replace(cfg.loss, sort_video=False, detach_text=False, align_weight=0.0,
                                     sort_weight=max(cfg.loss.sort_weight, 1.0)))


def build_data(shards: str | Path | ShardSet, cfg: PretrainConfig, env: dist.DistEnv,
               spec: TextSpec | None = None) -> tuple[WindowDataset, WindowDataset, TextSpec]:
    """(train set, val set, text spec). Without `spec` (a new run), rank 0 trains or reads the
    tokenizer on the train transcripts and every rank gets the same spec.

    Args:
        shards: a shard set spec (tvts.data.shardset), or an opened set.
    """
    shards = shards if isinstance(shards, ShardSet) else open_shard_set(shards)
    view = data_view(cfg, env.device)
    train_ds = WindowDataset(shards, "train", view, TextSpec("", ""), cfg.seed)
    if spec is None:
        spec = dist.broadcast_object(build_spec(cfg.model.text, train_ds.texts()) if env.is_main else None)
    train_ds.spec = spec
    return train_ds, WindowDataset(shards, "val", view, spec, cfg.seed), spec


def data_view(cfg: PretrainConfig, device: torch.device) -> ViewConfig:
    """The view with the data section's decoder choices.

    Raises:
        ConfigError: decode_device cuda without a CUDA device to decode on.
    """
    d = cfg.data
    if d.decode_device == "cuda" and device.type != "cuda":
        raise ConfigError(f"pretrain.data.decode_device: cuda, but this job runs on {device.type} "
                          "(no CUDA device); use cpu")
    return replace(view_config(cfg), jpeg_decoder=d.jpeg_decoder, decode_device=d.decode_device,
                   normalise_on=d.normalise_on)


def initial_model(cfg: PretrainConfig, spec: TextSpec):
    """The model as a new run starts it: seeded, then `pretrain.init` applied."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, spec)
    initialise(model, cfg.init)
    return model


def log_step(out: Path, mlrun, env: dist.DistEnv, values: dict[str, float], step: int, logger: logging.Logger) -> None:
    """One step's metrics into `out`/log.jsonl, MLflow and the log, on rank 0 only."""
    if not env.is_main:
        return
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "time": time.time()} | values) + "\n")
    if mlrun:
        mlrun.log_metrics(values, step=step)
    logger.info("step %d %s", step, " ".join(f"{k}={v:.4g}" for k, v in values.items()))


def trim_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be redone)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        io.atomic_write_text(path, "".join(line + "\n" for line in keep))


class PretrainJob:
    """One pretraining run, built (and restored when resuming) on construction; `run` trains it."""

    def __init__(self, cfg: PretrainConfig, shards: str | Path, out: Path, env: dist.DistEnv, text_only: bool = False):
        self.cfg, self.out, self.env, self.text_only = cfg, Path(out), env, text_only
        self.shards = open_shard_set(shards)
        self.stage = "text_only_baseline" if text_only else "pretrain"
        rt = cfg.runtime
        self.ckpts = checkpoint.CheckpointManager(self.out / "ckpt", run_key(cfg, self.shards, text_only), env,
                                                  rt.ckpt_every, rt.keep_last)
        self.resume = self.ckpts.find(resume_complete=False)
        if self.resume is None and env.is_main:
            (self.out / "log.jsonl").unlink(missing_ok=True)
        if self.resume and self.resume[1]["complete"]:
            log.info("finalising: %s is this run's final checkpoint; only the manifest is left to write",
                     self.resume[0].name)
        spec = TextSpec(**self.resume[1]["text_spec"]) if self.resume else None
        self.train_ds, self.val_ds, self.spec = build_data(self.shards, cfg, env, spec)
        self.videos = self.train_ds.videos()   # sample indices per video: the epoch's groups, and a count
        groups = self.videos if cfg.data.epoch == "video" else None
        self.sampler = ResumableBatchSampler(len(self.train_ds), cfg.data.batch_size, env.rank, env.world, cfg.seed,
                                             groups=groups, limit=cfg.data.epoch_limit)
        self.state = self.build_state(self.sampler.steps_per_epoch() // cfg.optim.grad_accum)
        val_sampler = ResumableBatchSampler(len(self.val_ds), cfg.data.eval_batch_size, env.rank, env.world,
                                            cfg.seed, shuffle=False, drop_last=False)
        self.val_loader = make_loader(self.val_ds, val_sampler, cfg, env)
        self.meter, self.mlrun, self.bad_samples = Meter(), None, {}

    @property
    def resume_run_id(self) -> str | None:
        """The MLflow run an interrupted run logged to (reopened when resuming)."""
        return (self.resume[1].get("mlflow_run_id") or None) if self.resume else None

    def build_state(self, steps_per_epoch: int) -> TrainState:
        cfg, env = self.cfg, self.env
        if steps_per_epoch < 1:
            raise ConfigError(f"pretrain.data.batch_size: {self.sampler.n} train {cfg.data.epoch}s per epoch are "
                              f"fewer than one global batch (batch_size x {env.world} ranks x grad_accum); lower it")
        if self.resume:
            torch.manual_seed(cfg.seed)
            model = build_model(cfg, self.spec)
        else:
            model = initial_model(cfg, self.spec)
        if env.world > 1:  # same weights everywhere (above), but each rank its own dropout masks
            torch.manual_seed(cfg.seed + 100_003 * (env.rank + 1))
        model.to(env.device)
        freeze_unused(model, cfg)
        opt = build_optimizer(model, cfg)
        state = TrainState(model, model, opt, build_scheduler(opt, steps_per_epoch, cfg), steps_per_epoch)
        if self.resume:
            self.ckpts.restore(state, self.resume[1])
            log.info("resuming from %s (step %d)", self.resume[0].name, state.step)
            if env.is_main:
                trim_log(self.out / "log.jsonl", state.step)
        state.engine = wrap(model, cfg, env)
        return state

    def metrics(self, values: dict[str, float], step: int) -> None:
        """log.jsonl, MLflow and the log (rank 0)."""
        log_step(self.out, self.mlrun, self.env, values, step, log)

    def batches(self) -> Iterable[dict]:
        """This epoch's train batches (the core times the wait for each)."""
        self.meter = Meter(wait0=self.state.telemetry.wait_s)
        return make_loader(self.train_ds, self.sampler, self.cfg, self.env)

    def micro_step(self, batch: dict, accum: int) -> dict[str, float]:
        """Forward, loss, backward; returns the loss terms (the divergence guard checks them)."""
        state, cfg, env = self.state, self.cfg, self.env
        batch = to_device(batch, env.device)
        with dist.autocast(env.device, cfg.runtime.amp):
            out = run_model(state.engine, batch)
        parts = losses(out, batch["order"], cfg, env)
        (parts["loss"] / accum).backward()
        terms = {k: v.item() for k, v in parts.items()}
        self.meter.add(terms | train_accuracy(out, batch), len(batch["order"]))
        return terms

    def after_step(self) -> None:
        state = self.state
        if state.step % self.cfg.runtime.log_every == 0:
            bad = bad_sample_counts(state)  # a collective: on every rank
            tel = state.telemetry
            self.metrics({f"train/{k}": v for k, v in self.meter.summary(self.env.world, tel.wait_s).items()}
                         | {"train/lr": state.scheduler.get_last_lr()[0], "train/skipped_steps": state.skipped_steps}
                         | {f"train/bad_samples/{k}": v for k, v in bad.items()}, state.step)
            self.meter = Meter(wait0=tel.wait_s)

    def end_epoch(self, epoch: int) -> None:
        # The bare model: ranks may hold unequal numbers of val batches, and a DDP forward is a
        # collective (buffer sync), so evaluating through DDP deadlocks.
        state = self.state
        metrics = evaluate(state.model, self.val_loader, self.cfg, self.env)
        if self.env.is_main:
            state.history.append({"epoch": epoch, "step": state.step} | metrics)
            perf = state.telemetry.summary(state.train_s)
            self.metrics({f"val/{k}": v for k, v in metrics.items()} | {"epoch": epoch} | perf, state.step)

    def run(self, mlrun=None) -> dict:
        """Train every remaining epoch, then write the manifest (rank 0). Returns it ({} elsewhere).

        Raises:
            Preempted: after checkpointing on SIGTERM/SIGUSR1.
        """
        cfg, state = self.cfg, self.state
        self.mlrun = mlrun
        self.ckpts.extra = {"config": json.loads(dumps(cfg)), "text_spec": self.spec.as_dict(),
                            "mlflow_run_id": mlrun.run_id if mlrun else ""}
        budget = Budget.of(cfg, "pretrain")
        if cfg.runtime.compile:
            self.count_flops_eagerly()
        run_epochs(state, self.sampler, self.batches, self.micro_step, budget, self.env, self.ckpts,
                   self.after_step, self.end_epoch)
        self.bad_samples = bad_sample_counts(state)
        if not self.env.is_main:
            return {}
        if mlrun:
            final = state.history[-1] if state.history else {}
            mlrun.log_metrics({f"final/{k}": v for k, v in final.items()}, step=state.step)
        manifest = self.manifest()
        io.atomic_write_json(self.out / "manifest.json", manifest)
        self.ckpts.finalise()
        if mlrun:
            mlrun.log_artifact(self.out / "manifest.json")
        return manifest

    def count_flops_eagerly(self) -> None:
        """The telemetry's FLOPs from the bare model on one val batch: the compiled engine must never
        run under the FLOP counter (the core counts the first train step of eager engines)."""
        tel, env = self.state.telemetry, self.env
        batch = next(iter(self.val_loader), None)
        if batch is None:
            return
        batch = to_device(batch, env.device)
        tel.device = env.device
        with dist.autocast(env.device, self.cfg.runtime.amp):
            tel.count_forward(lambda: run_model(self.state.model, batch), len(batch["order"]))

    def manifest(self) -> dict:
        state, cfg = self.state, self.cfg
        counts = {"train_windows": len(self.train_ds), "train_videos": len(self.videos),
                  "val_windows": len(self.val_ds), "world_size": self.env.world,
                  "steps": state.step, "steps_per_epoch": state.steps_per_epoch, "epochs": cfg.optim.epochs,
                  "skipped_steps": state.skipped_steps}  # non-finite steps the divergence guard skipped
        # The epochs this run validated, not whatever `epoch-*.pt` lies in the folder.
        epochs = [f"ckpt/{checkpoint.epoch_name(h['epoch'], h['step'])}" for h in state.history]
        return {"stage": self.stage, "bad_samples": self.bad_samples,  # replaced in training, by reason
                "inputs": {"shards": self.shards.spec,
                                                         "shards_fingerprint": self.shards.fingerprint()},
                "config": {"pretrain": cfg, "text_only": self.text_only}, "counts": counts,
                "outputs": {"epoch_checkpoints": epochs, "log": "log.jsonl"},
                "history": state.history, "versions": io.library_versions(), "cpu": cpu_record()}


def cpu_record() -> dict:
    """The CPU kernels this run computed with: the ISA ATen dispatched to, and any pins that the
    job's environment set (config `cpu_isa`), which oneDNN and MKL read."""
    pins = {k: v for k, v in os.environ.items() if k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    return {"capability": torch.backends.cpu.get_cpu_capability(), "pins": pins}


def initial_state(cfg: PretrainConfig, shards: str | Path | ShardSet | None, env: dist.DistEnv) -> dict:
    """The state a new pretraining run starts from, in best.pt format (a no-pretraining baseline).
    Without shards the tokenizer is the pretrained `model.text.model`'s (a released checkpoint)."""
    spec = build_data(shards, cfg, env)[2] if shards is not None else build_spec(cfg.model.text)
    model = initial_model(cfg, spec)
    return {"model": model.state_dict(), "config": io.to_jsonable(cfg), "text_spec": spec.as_dict(),
            "step": 0, "steps_per_epoch": 0, "run_key": "", "source": f"init:{cfg.init}",
            "selected_by": "none (no pretraining)", "score": float("nan")}
