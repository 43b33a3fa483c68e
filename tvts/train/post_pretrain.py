"""Post-pretraining on captioned images and clips (CC3M + WebVid): the paper's second training stage.

Starts from a selected TVTS checkpoint and trains the contrastive loss only: no sort loss, no
masking. For every batch index it takes one batch of images and one of clips and makes one
optimiser step on each, alternating (tvts.train.pair_data.AlternatingSampler), on the one
training core (tvts.train.trainer): DDP, AMP, step and epoch checkpoints, resume, preemption.
Each epoch ends with a validation pass on the held-out pairs (text<->video R@1 and the
contrastive loss per source, and their means), which checkpoint selection then reads.

Writes `<out>/ckpt/`, `<out>/log.jsonl` and, once trained, `<out>/manifest.json`; checkpoints
hold the *pretraining* config and text spec of the starting model, so every evaluation loads
them as it loads any TVTS checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tvts import io
from tvts.config import ConfigError, from_dict
from tvts.io import dumps
from tvts.models.config import LossConfig
from tvts.models.load import model_from_state
from tvts.models.text import TextSpec
from tvts.models.tvts import TVTS, full_precision
from tvts.train import checkpoint, schedule
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.train.pair_data import KINDS, AlternatingSampler, EvalSampler, PairDataset, PairSources, PairView
from tvts.train.post_config import PostPretrainConfig
from tvts.train.pretext import Meter, align_loss, to_device
from tvts.train.precision import compile_engine
from tvts.train.pretrain import cpu_record, log_step, trim_log
from tvts.train.trainer import Budget, TrainState, bad_sample_counts, run_epochs

log = logging.getLogger("tvts.post_pretrain")


class PairEncoder(nn.Module):
    """The TVTS model's two contrastive towers on (image or clip, caption) pairs.

    The video encoder gets as many temporal embeddings as the input has tubes, the first ones, as
    the official encoder takes them for inputs shorter than its 16 frames (1 tube for an image,
    2 for a 4-frame clip); `VideoViT.embed` adds all of them, which only fits 16-frame inputs.
    """

    def __init__(self, model: TVTS):
        super().__init__()
        self.model = model

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, E) normalised, every patch kept."""
        return F.normalize(self.model.vid_proj(self.model.video(frames)), dim=-1)

    def forward(self, frames: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """frames (B, 3, T, H, W), captions (B, 1, L) -> normalised (video, text) embeddings (B, E) each."""
        text = self.model.embed_text(self.model.encode_text(input_ids, attention_mask))
        return self.encode_video(frames), text


def pair_view(pre: PretrainConfig, cfg: PostPretrainConfig) -> PairView:
    v = pre.model.video
    return PairView(v.img_size, v.tubelet, cfg.data.clip_frames, pre.model.text.max_length,
                    tuple(cfg.data.crop_scale), cfg.data.flip)


def run_key(cfg: PostPretrainConfig, init: Path, pair_dirs: list[Path]) -> str:
    """The config, the starting checkpoint's bytes and every pair part's manifest."""
    h = hashlib.sha256(dumps({"post_pretrain": cfg}).encode())
    h.update(io.file_sha256(init).encode())
    for d in pair_dirs:
        h.update((Path(d) / "manifest.json").read_bytes())
    return h.hexdigest()[:16]


def pair_metrics(v: torch.Tensor, t: torch.Tensor, lc: LossConfig) -> dict[str, float]:
    """Retrieval R@1 both ways and the contrastive loss over one source's val pairs."""
    sim = v @ t.t()
    target = torch.arange(sim.shape[0])
    both = F.cross_entropy(sim / lc.temperature, target) + F.cross_entropy(sim.t() / lc.temperature, target)
    return {"t2v_r1": (sim.argmax(0) == target).float().mean().item(),
            "v2t_r1": (sim.argmax(1) == target).float().mean().item(),
            "loss_align": (both if lc.align_reduction == "sum" else both / 2).item(), "n": float(len(target))}


class PostPretrainJob:
    """One post-pretraining run, built (and restored when resuming) on construction; `run` trains it."""

    def __init__(self, cfg: PostPretrainConfig, init: Path, pair_dirs: list[Path], out: Path, env: dist.DistEnv):
        self.cfg, self.init, self.dirs, self.out, self.env = cfg, Path(init), [Path(d) for d in pair_dirs], Path(out), env
        start = checkpoint.load(self.init)
        self.pre = from_dict(PretrainConfig, start["config"], "checkpoint.config")
        self.spec = TextSpec(**start["text_spec"])
        rt = cfg.runtime
        self.ckpts = checkpoint.CheckpointManager(self.out / "ckpt", run_key(cfg, self.init, self.dirs), env,
                                                  rt.ckpt_every, rt.keep_last)
        self.resume = self.ckpts.find(resume_complete=False)
        if self.resume is None and env.is_main:
            (self.out / "log.jsonl").unlink(missing_ok=True)
        self.build_data()
        self.state = self.build_state(start)
        self.meters, self.mlrun = self.new_meters(), None

    @property
    def resume_run_id(self) -> str | None:
        return (self.resume[1].get("mlflow_run_id") or None) if self.resume else None

    def build_data(self) -> None:
        cfg, env, view = self.cfg, self.env, pair_view(self.pre, self.cfg)
        train = [PairDataset(self.dirs, k, "train", view, self.spec, cfg.seed) for k in KINDS]
        self.kinds = [k for k, ds in zip(KINDS, train) if len(ds)]
        if not self.kinds:
            raise ConfigError(f"data.cc3m, data.webvid: no train pairs in {', '.join(map(str, self.dirs))} "
                              "(see their manifests' rejects)")
        self.train_sets = [ds for ds in train if len(ds)]
        self.val_sets = {k: PairDataset(self.dirs, k, "val", view, self.spec, cfg.seed) for k in self.kinds}
        for ds in self.val_sets.values():
            if cfg.data.val_limit:
                ds.refs = ds.refs[:cfg.data.val_limit]
        b = cfg.data.batch_size
        self.sampler = AlternatingSampler([len(ds) for ds in self.train_sets], [b] * len(self.kinds), env.rank,
                                          env.world, cfg.seed, cfg.optim.grad_accum, cfg.data.epoch_limit)
        if self.sampler.steps_per_epoch() < 1:
            sizes = ", ".join(f"{k} {len(ds)}" for k, ds in zip(self.kinds, self.train_sets))
            raise ConfigError(f"post_pretrain.data.batch_size: the train pairs ({sizes}) are fewer than one global "
                              f"batch per source (batch_size x {env.world} ranks x grad_accum); lower it")

    def build_state(self, start: dict) -> TrainState:
        cfg, env = self.cfg, self.env
        model, _ = model_from_state(start, "cpu", self.init)
        model.train()
        model.video.grad_checkpointing = cfg.runtime.grad_checkpointing  # this stage's, not the pretraining's
        if env.world > 1:
            torch.manual_seed(cfg.seed + 100_003 * (env.rank + 1))
        else:
            torch.manual_seed(cfg.seed)
        model.to(env.device)
        for part in (model.sort_head, model.decoder):  # contrastive only: DDP must not wait for these
            if part is not None:
                part.requires_grad_(False)
        o = cfg.optim
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                                betas=tuple(o.betas), weight_decay=o.weight_decay)
        sched = schedule.build_scheduler(opt, lambda s: min(1.0, (s + 1) / o.warmup_steps) if o.warmup_steps else 1.0)
        self.encoder = PairEncoder(model)
        state = TrainState(model, self.encoder, opt, sched, self.sampler.steps_per_epoch())
        if self.resume:
            self.ckpts.restore(state, self.resume[1])
            log.info("resuming from %s (step %d)", self.resume[0].name, state.step)
            if env.is_main:
                trim_log(self.out / "log.jsonl", state.step)
        state.engine = dist.wrap_ddp(self.encoder, env)
        if cfg.runtime.compile:
            state.engine = compile_engine(state.engine, "post_pretrain", "post_pretrain.runtime.compile")
        return state

    def loader(self, dataset, sampler) -> DataLoader:
        w, d = self.cfg.data.workers, self.cfg.data
        gen = torch.Generator().manual_seed(self.cfg.seed)  # not the global RNG: resume stays exact
        return DataLoader(dataset, batch_sampler=sampler, num_workers=w, pin_memory=self.env.device.type == "cuda",
                          prefetch_factor=d.prefetch if w else None, generator=gen)

    def new_meters(self) -> dict[str, Meter]:
        """One logging window per source: each trains on every other step."""
        return {k: Meter(wait0=self.state.telemetry.wait_s) for k in self.kinds}

    def batches(self):
        self.meters = self.new_meters()
        return self.loader(PairSources(self.train_sets), self.sampler)

    def micro_step(self, batch: dict, accum: int) -> dict[str, float]:
        """Forward, loss, backward; returns the loss (the divergence guard checks it)."""
        env, lc = self.env, self.cfg.loss
        batch = to_device(batch, env.device)
        with dist.autocast(env.device, self.cfg.runtime.amp):
            v, t = self.state.engine(batch["frames"], batch["input_ids"], batch["attention_mask"])
        loss = align_loss(full_precision(v), full_precision(t), lc, env)
        (loss / accum).backward()
        kind = self.kinds[int(batch["source"][0])]
        terms = {"loss_align": loss.item()}
        self.meters[kind].add(terms, len(batch["index"]))
        return terms

    def metrics(self, values: dict[str, float], step: int) -> None:
        log_step(self.out, self.mlrun, self.env, values, step, log)

    def after_step(self) -> None:
        state, tel = self.state, self.state.telemetry
        if state.step % self.cfg.runtime.log_every == 0:
            values = {"train/lr": state.scheduler.get_last_lr()[0], "train/skipped_steps": state.skipped_steps}
            values |= {f"train/bad_samples/{k}": v for k, v in bad_sample_counts(state).items()}  # every rank
            for kind, meter in self.meters.items():
                if meter.n:
                    values |= {f"train/{kind}/{k}": v for k, v in meter.summary(self.env.world, tel.wait_s).items()}
            losses = [values[f"train/{k}/loss_align"] for k in self.kinds if f"train/{k}/loss_align" in values]
            values["train/loss_align"] = sum(losses) / len(losses)
            self.metrics(values, state.step)
            self.meters = self.new_meters()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Each source's val pairs on every rank's share, gathered; per-source and mean metrics (rank 0)."""
        self.encoder.eval()
        out: dict[str, float] = {}
        for source, kind in enumerate(self.kinds):
            ds = self.val_sets[kind]
            if not len(ds):
                continue
            sampler = EvalSampler(source, len(ds), self.cfg.data.eval_batch_size, self.env.rank, self.env.world)
            vs, ts, idx = [], [], []
            for batch in self.loader(PairSources([self.val_sets[k] for k in self.kinds]), sampler):
                batch = to_device(batch, self.env.device)
                with dist.autocast(self.env.device, self.cfg.runtime.amp):
                    v, t = self.encoder(batch["frames"], batch["input_ids"], batch["attention_mask"])
                vs.append(v.float().cpu()), ts.append(t.float().cpu()), idx.append(batch["index"].cpu())
            local = (torch.cat(vs), torch.cat(ts), torch.cat(idx)) if vs else None
            gathered = [g for g in dist.gather_objects(local) if g is not None]
            if self.env.is_main and gathered:
                v, t, i = (torch.cat([g[j] for g in gathered]) for j in range(3))
                order = torch.argsort(i)
                out |= {f"{kind}/{m}": x for m, x in pair_metrics(v[order], t[order], self.cfg.loss).items()}
        self.encoder.train()
        for m in ("t2v_r1", "v2t_r1", "loss_align"):  # the sources' mean: what selection reads
            vals = [out[f"{k}/{m}"] for k in self.kinds if f"{k}/{m}" in out]
            if vals:
                out[m] = sum(vals) / len(vals)
        return out

    def end_epoch(self, epoch: int) -> None:
        state = self.state
        metrics = self.evaluate()
        if self.env.is_main:
            state.history.append({"epoch": epoch, "step": state.step} | metrics)
            perf = state.telemetry.summary(state.train_s)
            self.metrics({f"val/{k}": v for k, v in metrics.items()} | {"epoch": epoch} | perf, state.step)

    def run(self, mlrun=None, on_trained: Callable[[dict], None] = lambda manifest: None) -> dict:
        """Train every remaining epoch, then write the manifest (rank 0). Returns it ({} elsewhere).

        Args:
            on_trained: called with the manifest before the run is finalised (selection): if it
                fails, a rerun resumes at the final checkpoint and only does this again.
        Raises:
            Preempted: after checkpointing on SIGTERM/SIGUSR1.
        """
        cfg, state = self.cfg, self.state
        self.mlrun = mlrun
        self.ckpts.extra = {"config": json.loads(dumps(self.pre)), "text_spec": self.spec.as_dict(),
                            "post_pretrain": json.loads(dumps(cfg)), "mlflow_run_id": mlrun.run_id if mlrun else ""}
        budget = Budget.of(cfg, "post_pretrain")
        run_epochs(state, self.sampler, self.batches, self.micro_step, budget, self.env, self.ckpts,
                   self.after_step, self.end_epoch)
        self.bad_samples = bad_sample_counts(state)
        if not self.env.is_main:
            return {}
        manifest = self.manifest()
        io.atomic_write_json(self.out / "manifest.json", manifest)
        on_trained(json.loads(dumps(manifest)))
        self.ckpts.finalise()
        if mlrun:
            mlrun.log_metrics({f"final/{k}": v for k, v in (state.history[-1] if state.history else {}).items()},
                              step=state.step)
            mlrun.log_artifact(self.out / "manifest.json")
        return manifest

    def manifest(self) -> dict:
        state, cfg = self.state, self.cfg
        counts = {f"train_{k}": len(ds) for k, ds in zip(self.kinds, self.train_sets)}
        counts |= {f"val_{k}": len(ds) for k, ds in self.val_sets.items()}
        counts |= {"world_size": self.env.world, "steps": state.step, "steps_per_epoch": state.steps_per_epoch,
                   "epochs": cfg.optim.epochs, "skipped_steps": state.skipped_steps}
        epochs = [f"ckpt/{checkpoint.epoch_name(h['epoch'], h['step'])}" for h in state.history]
        return {"stage": "post_pretrain", "bad_samples": self.bad_samples,  # replaced in training, by reason
                "inputs": {"init": str(self.init), "pairs": [str(d) for d in self.dirs]},
                "config": {"post_pretrain": cfg}, "counts": counts, "sources": self.kinds,
                "outputs": {"epoch_checkpoints": epochs, "log": "log.jsonl"}, "history": state.history,
                "train_s": state.train_s, "versions": io.library_versions(), "cpu": cpu_record()}
