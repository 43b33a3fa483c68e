"""One classification fine-tuning job: build (or restore) the classifier on the pretrained video
encoder, train it on the one training core, score the test split's views, write the result JSON.
Recipe: tvts.eval.finetune. The stage is tvts.stages.eval_finetune.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from tvts import io
from tvts.eval.config import FinetuneConfig
from tvts.eval.features import file_digest, video_list_digest
from tvts.eval.finetune import (AugmentedClips, accuracy, build_augment, build_classifier, build_optimizer,
                                classification_loss, predict)
from tvts.eval.job import TuningJob
from tvts.eval.tuning import (TuneState, build_scheduler, run_key, steps_per_epoch, train, training_fields,
                              tuning_engine)
from tvts.eval.views import ClipDataset
from tvts.models.load import load_model
from tvts.train import checkpoint
from tvts.train.precision import autocast_dtype
from tvts.train.data import ResumableBatchSampler

log = logging.getLogger("tvts.eval_finetune")
STAGE = "eval_finetune"


class FinetuneJob(TuningJob):
    """One fine-tuning job: what `main` wires together."""

    STAGE, TASK, CONFIG = STAGE, "finetune", FinetuneConfig
    cfg: FinetuneConfig

    def build(self, train_set, n_classes: int) -> tuple[TuneState, checkpoint.CheckpointManager, AugmentedClips, ResumableBatchSampler]:
        """Model, data, optimiser and checkpoints; restored from this run's newest checkpoint if any."""
        cfg, env, a = self.cfg, self.env, self.args
        pretrained, self.pcfg = load_model(a.model)
        v = self.pcfg.model.video
        model = build_classifier(pretrained.video, n_classes, cfg).to(env.device)
        if env.world > 1:  # same weights everywhere (above), but each rank its own dropout / drop-path masks
            torch.manual_seed(cfg.seed + 100_003 * (env.rank + 1))
        data = AugmentedClips(train_set.items, v.num_frames, v.img_size, self.views.short_side,
                              build_augment(cfg, v.img_size, self.spec.format), cfg.seed, cfg.train_mask_ratio,
                              v.tubelet, v.patch_size, test_view=cfg.train_view == "test")
        sampler = ResumableBatchSampler(len(data), cfg.batch_size, env.rank, env.world, cfg.seed)
        spe = steps_per_epoch(sampler, cfg.grad_accum, "eval.finetune")
        self.global_batch = cfg.batch_size * env.world * cfg.grad_accum
        self.peak_lr = cfg.peak_lr(self.global_batch)
        opt = build_optimizer(model, cfg, self.peak_lr)
        state = TuneState(model, model, opt, build_scheduler(opt, spe, cfg, self.peak_lr), spe)
        self.sha = file_digest(a.model)
        key = run_key({"task": "finetune", "finetune": training_fields(cfg), "short_side": self.views.short_side,
                       "spec": self.spec, "n_classes": n_classes, "world": env.world},
                      [self.sha, video_list_digest([f"{i.video_id}:{i.label}" for i in train_set.items])])
        ckpts = checkpoint.CheckpointManager(Path(a.work) / "ckpt", key, env, cfg.ckpt_every, cfg.keep_last,
                                             keep_epochs=cfg.keep_last)
        self.resume = ckpts.find(resume_complete=True)
        if self.resume:
            ckpts.restore(state, self.resume[1])
            log.info("%s %s (step %d of %d)", "finished run, evaluating only:" if self.resume[1]["complete"]
                     else "resuming from", self.resume[0].name, state.step, spe * cfg.epochs)
        state.engine = tuning_engine(model, env, cfg, STAGE, "eval.finetune")
        return state, ckpts, data, sampler

    def test_set(self, items) -> ClipDataset:
        v = self.pcfg.model.video
        return ClipDataset(items, v.num_frames, v.img_size, self.views.short_side, self.views.temporal,
                           self.views.spatial)

    def on_epoch(self, state: TuneState, test: ClipDataset):
        """Per-epoch callback: optional test accuracy (val/top1) and the epoch's MLflow metrics."""
        def callback(record: dict) -> dict:
            extra = {}
            every = self.cfg.val_every
            if every and ((record["epoch"] + 1) % every == 0 or record["epoch"] == self.cfg.epochs - 1):
                pred = predict(state.model, test, self.views.batch_size, self.views.workers, self.env, self.cfg.amp)
                extra = {"val/top1": accuracy(pred)["top1"]} if pred is not None else {}
            if self.mlrun:
                self.mlrun.log_metrics({k: v for k, v in (record | extra).items() if k != "epoch"},
                                       step=record["epoch"])
            return extra
        return callback

    def run(self) -> dict | None:
        """Train (or resume), test, write the JSON (rank 0). Returns it on rank 0, None elsewhere."""
        t0 = time.perf_counter()
        a, cfg, env = self.args, self.cfg, self.env
        train_set, test_set = self.load_splits()
        n_classes = len(train_set.classes) or 1 + max((i.label for i in train_set.items + test_set.items), default=0)
        state, ckpts, data, sampler = self.build(train_set, n_classes)
        test = self.test_set(test_set.items)
        with self.tracking() as mlrun:
            self.mlrun = mlrun
            ckpts.extra["mlflow_run_id"] = mlrun.run_id if mlrun else ""  # only rank 0 writes checkpoints

            def loss_fn(engine, batch):
                return classification_loss(engine, batch, env.device, cfg.label_smoothing)

            train(state, data, sampler, loss_fn, cfg, env, ckpts, self.on_epoch(state, test))
            t1 = time.perf_counter()
            pred = predict(state.model, test, self.views.batch_size, self.views.workers, env, cfg.amp)
            self.timings |= {"time/train_s": state.train_s, "time/test_s": time.perf_counter() - t1}
            self.timings |= state.telemetry.summary(state.train_s)
            if not env.is_main:
                return None
            self.timings["time/total_s"] = time.perf_counter() - t0
            result = self.result(state, train_set, test_set, pred, n_classes, ckpts)
            if a.save_model:
                checkpoint.save(Path(a.save_model), self.finetuned_state(state))
                result["saved_model"] = a.save_model
            io.atomic_write_json(Path(a.out), result)
            mlrun.log_metrics(result["metrics"] | result["counts"] | self.timings, step=0)
            mlrun.log_artifact(Path(a.out))
        m = result["metrics"]
        log.info("%s fine-tune: top-1 %.2f top-5 %.2f (%d train, %d test)", a.dataset, m["top1"], m["top5"],
                 result["counts"]["n_train"], result["counts"]["n_test"])
        return result

    def result(self, state: TuneState, train_set, test_set, pred: dict, n_classes: int, ckpts: checkpoint.CheckpointManager) -> dict:
        """The output JSON."""
        rejects = self.rejects(train_set, state.rejected, test_set, pred)
        n_missing = len(train_set.missing) + len(test_set.missing)
        counts = {"n_train": len(train_set.items) - len(state.rejected), "n_test": int(pred["ok"].sum()),
                  "n_classes": n_classes, "n_unreadable": len(rejects) - n_missing, "n_missing": n_missing,
                  "steps": state.step, "world_size": self.env.world}
        v, a = self.pcfg.model.video, self.args
        final = checkpoint.epoch_checkpoints(ckpts.folder)[-1]
        return {"task": "finetune", "dataset": a.dataset, "metrics": accuracy(pred), "counts": counts,
                "rejects": rejects.rows, "reject_counts": rejects.counts(), "recipe": self.recipe(state),
                "config": {"dataset": self.spec, "views": self.views, "finetune": self.cfg},
                "model": {"checkpoint": a.model, "sha256": self.sha, "num_frames": v.num_frames,
                          "img_size": v.img_size},
                "checkpoint": str(final), "resumed_from": self.resume[0].name if self.resume else None,
                "history": state.history, "timings": self.timings, "versions": io.library_versions()}

    def finetuned_state(self, state: TuneState) -> dict:
        """The input checkpoint with its video encoder replaced by the fine-tuned one (the head is
        dropped): a model every frozen probe reads like a pretrained one."""
        a, src = self.args, checkpoint.load(self.args.model)   # read once, at the end: not kept while training
        tuned = {f"video.{k}": v.detach().cpu() for k, v in state.model.video.state_dict().items()}
        return src | {"model": src["model"] | tuned, "step": state.step, "source": f"finetune:{a.dataset}",
                      "selected_by": f"fine-tuned on {a.dataset} ({state.step} steps) from {a.model}"}

    def recipe(self, state: TuneState) -> dict:
        """The resolved protocol, as run."""
        cfg = self.cfg
        return {"optimizer": f"AdamW betas {tuple(cfg.betas)}, weight decay {cfg.weight_decay} (not on norms, "
                             "biases, cls token, position/temporal embeddings)",
                "peak_lr": self.peak_lr, "global_batch": self.global_batch, "layer_decay": cfg.layer_decay,
                "schedule": f"{cfg.warmup_epochs} warm-up epochs (linear, per step) + cosine to {cfg.min_lr}",
                "epochs": cfg.epochs, "steps_per_epoch": state.steps_per_epoch,
                "head": f"Linear on final-norm {'CLS' if cfg.pool == 'cls' else 'mean patch token'}",
                "train_view": cfg.train_view,
                "augment": {"rand_augment": cfg.rand_augment or "none", "same_ops_on_every_frame": True,
                            "random_erasing": cfg.reprob, "flip": cfg.uses_flip(self.spec.format),
                            "crop": {"scale": cfg.crop_scale, "ratio": cfg.crop_ratio},
                            "train_mask_ratio": cfg.train_mask_ratio},
                "label_smoothing": cfg.label_smoothing, "drop_path": cfg.drop_path,
                "test_views": f"{self.views.temporal}x{self.views.spatial}, short side {self.views.short_side}, "
                              "logits averaged", "ties": "pessimistic",
                "device": str(self.env.device), "amp": str(autocast_dtype(self.env.device, cfg.amp) or "off")}
