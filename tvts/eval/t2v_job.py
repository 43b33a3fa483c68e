"""One text-to-video retrieval job: zero-shot scores, then (with `eval.t2v.epochs` > 0) contrastive
fine-tuning on the one training core and the scores again. Protocol: tvts.eval.t2v. The stage is
tvts.stages.eval_t2v.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from tvts import io
from tvts.eval.config import T2VConfig
from tvts.eval.features import file_digest, video_list_digest
from tvts.eval.t2v import (CaptionedClips, RetrievalModel, build_optimizer, queries, retrieval_loss, retrieval_scores,
                           text_embeddings, video_embeddings)
from tvts.eval.job import TuningJob
from tvts.eval.tuning import (TuneState, build_scheduler, run_key, steps_per_epoch, train, training_fields,
                              tuning_engine)
from tvts.eval.views import ClipDataset
from tvts.models.load import load_model
from tvts.models.text import load_tokenizer
from tvts.train import checkpoint
from tvts.train.data import ResumableBatchSampler

log = logging.getLogger("tvts.eval_t2v")
STAGE = "eval_t2v"


class T2VJob(TuningJob):
    """One retrieval job: what `main` wires together."""

    STAGE, TASK, CONFIG = STAGE, "t2v", T2VConfig
    cfg: T2VConfig

    def setup(self) -> None:
        """Splits, model, tokenizer, queries and the test set."""
        a, cfg, v = self.args, self.cfg, self.views
        self.train_set, self.test_set = self.load_splits()
        tvts_model, self.pcfg = load_model(a.model, self.env.device)
        self.model = RetrievalModel(tvts_model)
        self.sha = file_digest(a.model)
        self.temperature = cfg.temperature or self.pcfg.loss.temperature
        self.max_length = cfg.max_length or self.pcfg.model.text.max_length
        self.tokenizer = load_tokenizer(tvts_model.text_spec, self.max_length)
        self.mode = cfg.query_mode(self.spec.format)
        self.texts, self.text_video = queries(self.test_set.items, self.mode)
        mv = self.pcfg.model.video
        t, s = (v.temporal, v.spatial) if cfg.test_views == "views" else (1, 1)
        self.test = ClipDataset(self.test_set.items, mv.num_frames, mv.img_size, v.short_side, t, s)

    def build_training(self) -> tuple[TuneState, checkpoint.CheckpointManager, CaptionedClips, ResumableBatchSampler]:
        """Fine-tuning data, optimiser and checkpoints (found, not yet restored)."""
        cfg, env, mv = self.cfg, self.env, self.pcfg.model.video
        clips = ClipDataset(self.train_set.items, mv.num_frames, mv.img_size, self.views.short_side, train=True,
                            seed=cfg.seed)
        data = CaptionedClips(clips, self.model.tvts.text_spec, self.max_length, cfg.seed, cfg.train_captions,
                              cfg.train_mask_ratio, mv.tubes, mv.patches)
        sampler = ResumableBatchSampler(len(data), cfg.batch_size, env.rank, env.world, cfg.seed)
        spe = steps_per_epoch(sampler, cfg.grad_accum, "eval.t2v")
        opt = build_optimizer(self.model, cfg)
        state = TuneState(self.model, self.model, opt, build_scheduler(opt, spe, cfg, cfg.lr), spe)
        listing = [f"{i.video_id}:{'|'.join(i.captions)}" for i in self.train_set.items]
        key = run_key({"task": "t2v", "t2v": training_fields(cfg), "short_side": self.views.short_side,
                       "spec": self.spec, "temperature": self.temperature, "max_length": self.max_length,
                       "world": env.world}, [self.sha, video_list_digest(listing)])
        ckpts = checkpoint.CheckpointManager(Path(self.args.work) / "ckpt", key, env, cfg.ckpt_every,
                                             cfg.keep_last, keep_epochs=cfg.keep_last)
        self.resume = ckpts.find(resume_complete=True)
        return state, ckpts, data, sampler

    def evaluate(self, phase: str) -> dict[str, float]:
        """`<phase>/r1` ... on rank 0 ({} elsewhere); keeps the video readability for the rejects."""
        t0 = time.perf_counter()
        cfg, env, v = self.cfg, self.env, self.views
        self.videos = video_embeddings(self.model, self.test, v.batch_size, v.workers, env, cfg.amp)
        scores = {}
        if env.is_main:
            text = text_embeddings(self.model, self.texts, self.tokenizer, cfg.text_batch_size, env, cfg.amp)
            scores = retrieval_scores(self.videos, self.texts, self.text_video, text)
            self.n_queries = scores.pop("n_queries")
            log.info("%s %s: R@1 %.2f R@5 %.2f R@10 %.2f MedR %.1f", self.args.dataset, phase, scores["r1"],
                     scores["r5"], scores["r10"], scores["medr"])
        self.timings[f"time/{phase}_s"] = time.perf_counter() - t0
        return {f"{phase}/{k}": val for k, val in scores.items()}

    def finetune(self) -> TuneState:
        """Contrastive fine-tuning (resumed from --work when interrupted); returns the final state."""
        cfg, env = self.cfg, self.env
        state, ckpts, data, sampler = self.training
        ckpts.extra["mlflow_run_id"] = self.mlrun.run_id if self.mlrun else ""
        torch.manual_seed(cfg.seed + (100_003 * (env.rank + 1) if env.world > 1 else 0))  # per-rank dropout
        if self.resume:
            ckpts.restore(state, self.resume[1])
            log.info("%s %s (step %d)", "finished run, evaluating only:" if self.resume[1]["complete"]
                     else "resuming from", self.resume[0].name, state.step)
        state.engine = tuning_engine(self.model, env, cfg, STAGE, "eval.t2v")

        def loss_fn(engine, batch):
            return retrieval_loss(engine, batch, env.device, self.temperature)

        def on_epoch(record: dict) -> dict:
            if self.mlrun:
                self.mlrun.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
            return {}

        train(state, data, sampler, loss_fn, cfg, env, ckpts, on_epoch)
        self.timings["time/train_s"] = state.train_s
        self.timings |= state.telemetry.summary(state.train_s)
        self.final_ckpt = str(checkpoint.epoch_checkpoints(ckpts.folder)[-1]) if env.is_main else ""
        return state

    def run(self) -> dict | None:
        """Zero-shot, fine-tune, test again, write the JSON (rank 0). Returns it on rank 0, None elsewhere."""
        t0 = time.perf_counter()
        self.setup()
        self.training = self.build_training() if self.cfg.epochs > 0 else None
        state = None
        with self.tracking() as mlrun:
            self.mlrun = mlrun
            metrics = self.evaluate("zeroshot")
            if self.training:
                state = self.finetune()
                metrics |= self.evaluate("finetuned")
            if not self.env.is_main:
                return None
            self.timings["time/total_s"] = time.perf_counter() - t0
            result = self.result(metrics, state)
            io.atomic_write_json(Path(self.args.out), result)
            mlrun.log_metrics(metrics | result["counts"] | self.timings, step=0)
            mlrun.log_artifact(Path(self.args.out))
        return result

    def result(self, metrics: dict, state: TuneState | None) -> dict:
        """The output JSON."""
        rejected = state.rejected if state else {}
        rejects = self.rejects(self.train_set, rejected, self.test_set, self.videos)
        n_missing = len(self.train_set.missing) + len(self.test_set.missing)
        counts = {"n_train": len(self.train_set.items) - len(rejected), "n_test": int(self.videos["ok"].sum()),
                  "n_queries": self.n_queries, "n_unreadable": len(rejects) - n_missing, "n_missing": n_missing,
                  "steps": state.step if state else 0, "world_size": self.env.world}
        a, mv = self.args, self.pcfg.model.video
        return {"task": "t2v", "dataset": a.dataset, "metrics": metrics, "counts": counts, "rejects": rejects.rows,
                "reject_counts": rejects.counts(), "protocol": self.protocol(state),
                "config": {"dataset": self.spec, "views": self.views, "t2v": self.cfg},
                "model": {"checkpoint": a.model, "sha256": self.sha, "num_frames": mv.num_frames,
                          "img_size": mv.img_size},
                "checkpoint": getattr(self, "final_ckpt", None),
                "resumed_from": self.resume[0].name if self.resume else None,
                "history": state.history if state else [], "timings": self.timings, "versions": io.library_versions()}

    def protocol(self, state: TuneState | None) -> dict:
        cfg, v = self.cfg, self.views
        views = f"{v.temporal}x{v.spatial} views, embeddings averaged" if cfg.test_views == "views" else "centre view"
        return {"queries": f"{self.mode} caption(s) of each test video; ground truth = its own video",
                "video": f"final-norm CLS -> vid_proj -> L2, {views}, short side {v.short_side}",
                "text": f"checkpoint tokenizer (max {self.max_length} tokens), K=1 -> embed_text",
                "similarity": "cosine", "ties": "pessimistic",
                "finetune": None if state is None else {
                    "loss": "symmetric InfoNCE, embeddings gathered over ranks", "temperature": self.temperature,
                    "optimizer": f"AdamW lr {cfg.lr} betas {tuple(cfg.betas)} wd {cfg.weight_decay} (matrices only)",
                    "schedule": f"{cfg.warmup_epochs} warm-up epochs + cosine to {cfg.min_lr}", "epochs": cfg.epochs,
                    "global_batch": cfg.batch_size * self.env.world * cfg.grad_accum,
                    "steps_per_epoch": state.steps_per_epoch, "train_captions": cfg.train_captions,
                    "trained": "video, text, projections (sort head frozen)"},
                "device": str(self.env.device)}
