"""Benchmark a TVTS training step.

Run: `.venv/bin/python bench/train_step.py [--steps N] [--skip-paper]`. Prints, each with a
baseline measured in the same run:
  1. demo config, CPU: forward+backward samples/s with tube masking 0.75 against no masking;
  2. demo config, CPU, real data (needs results/demo/shards from `make run`): samples/s and
     data-wait fraction with the configured DataLoader workers against loading in the main
     process (workers=0);
  3. paper-sized model (ViT-B/16 at 16x224^2 + a DistilBERT-base-shaped text encoder), CPU:
     forward+backward seconds per sample, mask 0.75 against no masking;
  4. on a GPU only: bf16 samples/s and MFU (the telemetry's model FLOPs over the measured
     rate of a large bf16 matmul) for ViT-B 16x224^2, mask 0.75, at the largest batch that fits;
  5. demo config, CPU: samples/s in bf16 autocast and compiled (inductor), each against fp32 eager.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvts.config import load_sections  # noqa: E402
from tvts.models.text import TextConfig, build_spec  # noqa: E402
from tvts.models.video_vit import tube_keep_indices  # noqa: E402
from tvts.train import distributed as dist  # noqa: E402
from tvts.train.config import PretrainConfig  # noqa: E402
from tvts.train.data import ResumableBatchSampler, WindowDataset  # noqa: E402
from tvts.models.load import build_model  # noqa: E402
from tvts.train.pretext import (Meter, build_optimizer, build_scheduler, losses, make_loader,  # noqa: E402
                                run_model, to_device, view_config)
from tvts.train.trainer import TrainState, optimizer_step  # noqa: E402

WORDS = "the red blue green circle square bar moves left right up down grows shrinks appears vanishes".split()


def demo_config() -> PretrainConfig:
    return load_sections({"pretrain": PretrainConfig}, str(ROOT / "config/demo.yaml"))["pretrain"]


def paper_config() -> PretrainConfig:
    cfg = load_sections({"pretrain": PretrainConfig}, str(ROOT / "config/paper.yaml"))["pretrain"]
    # distilbert-base-uncased's shape, built from config (nothing is downloaded)
    text = TextConfig(model="scratch", max_length=50, vocab_size=30522, dim=768, depth=6, heads=12, hidden_dim=3072)
    return replace(cfg, init="random", model=replace(cfg.model, text=text))


def synthetic_batch(cfg: PretrainConfig, spec, b: int, mask_ratio: float, device) -> dict:
    from tvts.models.text import load_tokenizer, tokenize

    v, k = cfg.model.video, cfg.model.k
    rng = np.random.default_rng(0)
    tok = load_tokenizer(spec, cfg.model.text.max_length)
    texts = [" ".join(rng.choice(WORDS, 12)) for _ in range(b * k)]
    ids, mask = tokenize(tok, texts)
    keep = np.stack([tube_keep_indices(rng, v.tubes, v.patches, mask_ratio) for _ in range(b)])
    batch = {"frames": torch.randn(b, 3, v.num_frames, v.img_size, v.img_size),
             "keep": torch.from_numpy(keep), "input_ids": ids.view(b, k, -1),
             "attention_mask": mask.view(b, k, -1), "order": torch.stack([torch.randperm(k) for _ in range(b)])}
    return to_device(batch, device)


def time_steps(cfg: PretrainConfig, b: int, mask_ratio: float, steps: int, device, amp: str = "off",
               compile_: bool = False) -> tuple[float, object]:
    """Seconds per fwd+bwd+step on a fixed synthetic batch (after 2 warm-up steps: a compiled
    engine compiles in the first), under `amp` autocast (`tvts.train.distributed.autocast`)."""
    spec = build_spec(cfg.model.text, [" ".join(WORDS)] * 4)
    model = build_model(cfg, spec).to(device).train()
    opt = build_optimizer(model, cfg)
    state = TrainState(model, model, opt, build_scheduler(opt, 1000, cfg), 1000)
    batch = synthetic_batch(cfg, spec, b, mask_ratio, device)
    env = dist.DistEnv(0, 1, 0, torch.device(device))
    engine = torch.compile(model) if compile_ else model
    for i in range(steps + 2):
        if i == 2:
            sync(device)
            t0 = time.perf_counter()
        with dist.autocast(torch.device(device), amp):
            out = run_model(engine, batch)
        losses(out, batch["order"], cfg, env)["loss"].backward()
        optimizer_step(state, cfg.optim.clip_grad)
    sync(device)
    return (time.perf_counter() - t0) / steps, (model, batch)


def measure(cfg: PretrainConfig, b: int, device, compile_: bool, steps: int = 5) -> dict[str, float]:
    """samples/s, model FLOPs (the telemetry's count) and MFU against the measured matmul peak of
    one train step at batch `b` under `cfg.runtime.amp`, the engine compiled or not."""
    from tvts.train.telemetry import flop_counter, measure_peak_flops, train_dtype

    device = torch.device(device)
    sec, (model, batch) = time_steps(cfg, b, cfg.model.mask_ratio, steps, device, amp=cfg.runtime.amp,
                                     compile_=compile_)
    env = dist.DistEnv(0, 1, 0, device)
    # counted on the eager model: a FLOP counter must not see a compiled graph
    with flop_counter() as fc, dist.autocast(device, cfg.runtime.amp):
        losses(run_model(model, batch), batch["order"], cfg, env)["loss"].backward()
    flops, peak = fc.get_total_flops() / b, measure_peak_flops(device, train_dtype(device, cfg.runtime.amp))
    return {"samples_per_s": b / sec, "step_s": sec, "flops_per_sample": flops, "tflops": flops * b / sec / 1e12,
            "peak_tflops": peak / 1e12, "mfu": flops * b / sec / peak}


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def real_data(cfg: PretrainConfig, steps: int, workers: int) -> dict[str, float]:
    shards = ROOT / "results/demo/shards"
    spec = build_spec(cfg.model.text, [" ".join(WORDS)] * 4)
    ds = WindowDataset(shards, "train", view_config(cfg), spec, cfg.seed)
    sampler = ResumableBatchSampler(len(ds), cfg.data.batch_size, seed=cfg.seed)
    env = dist.DistEnv(0, 1, 0, torch.device("cpu"))
    model = build_model(cfg, spec).train()
    opt = build_optimizer(model, cfg)
    state = TrainState(model, model, opt, build_scheduler(opt, 1000, cfg), 1000)
    loader = make_loader(ds, sampler, cfg, env, workers)
    it = iter(loader)
    next(it)  # start-up (worker spawn) is not a step
    meter, n, tw = Meter(), 0, time.perf_counter()
    for batch in it:
        meter.wait += time.perf_counter() - tw
        losses(run_model(model, batch), batch["order"], cfg, env)["loss"].backward()
        optimizer_step(state, cfg.optim.clip_grad)
        meter.add({}, len(batch["order"]))
        n += 1
        if n == steps:
            break
        tw = time.perf_counter()
    return meter.summary(1)


def gpu_section(steps: int) -> None:
    cfg = replace(paper_config(), runtime=replace(paper_config().runtime, amp="bf16"))
    for b in (32, 64, 96, 128, 192, 256):
        try:
            m = measure(cfg, b, "cuda", compile_=False, steps=steps)
        except torch.OutOfMemoryError:
            break
        torch.cuda.empty_cache()
        print(f"  batch {b:4d}: {m['samples_per_s']:8.1f} samples/s, {m['tflops']:6.1f} TFLOP/s, MFU {m['mfu']:.3f} "
              f"(measured bf16 matmul peak {m['peak_tflops']:.0f} TFLOP/s)")


def cpu_precision_and_compile(cfg: PretrainConfig, steps: int) -> None:
    """The demo model's train step on the CPU: fp32 eager (the baseline), bf16 eager, fp32 compiled."""
    b = cfg.data.batch_size
    fp32, _ = time_steps(cfg, b, cfg.model.mask_ratio, steps, "cpu", amp="off")
    bf16, _ = time_steps(cfg, b, cfg.model.mask_ratio, steps, "cpu", amp="bf16")
    compiled, _ = time_steps(cfg, b, cfg.model.mask_ratio, steps, "cpu", amp="off", compile_=True)
    print(f"5. demo model, CPU ({torch.backends.cpu.get_cpu_capability()}) fwd+bwd+AdamW: fp32 eager {b / fp32:.1f} "
          f"samples/s; bf16 autocast {b / bf16:.1f} (x{fp32 / bf16:.2f}); fp32 compiled {b / compiled:.1f} "
          f"(x{fp32 / compiled:.2f})")


def main() -> None:
    os.environ.setdefault("TVTS_TRACKING", "off")  # time the stage, not the store; set here, not at import
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--skip-paper", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = demo_config()
    torch.set_num_threads(cfg.runtime.threads or torch.get_num_threads())
    b = cfg.data.batch_size
    print(f"torch threads {torch.get_num_threads()}; demo batch {b}")
    masked, _ = time_steps(cfg, b, cfg.model.mask_ratio, args.steps, "cpu")
    full, _ = time_steps(cfg, b, 0.0, args.steps, "cpu")
    print(f"1. demo model, CPU fwd+bwd: {b / masked:.1f} samples/s with mask {cfg.model.mask_ratio}, "
          f"{b / full:.1f} without; x{full / masked:.2f} from tube masking")
    if (ROOT / "results/demo/shards/manifest.json").exists():
        w = real_data(cfg, 2 * args.steps, cfg.data.workers)
        w0 = real_data(cfg, 2 * args.steps, 0)
        print(f"2. demo, real shards: {w['samples_per_s']:.1f} samples/s, data wait {w['data_wait']:.3f} with "
              f"{cfg.data.workers} worker(s); {w0['samples_per_s']:.1f} samples/s, data wait {w0['data_wait']:.3f} "
              f"loading in the main process; x{w['samples_per_s'] / w0['samples_per_s']:.2f}")
    else:
        print("2. skipped: no results/demo/shards (run `make run` first)")
    if not args.skip_paper:
        pc = paper_config()
        masked, _ = time_steps(pc, 2, pc.model.mask_ratio, 2, "cpu")
        full, _ = time_steps(pc, 2, 0.0, 1, "cpu")
        print(f"3. paper-sized model (ViT-B/16 16x224^2 + DistilBERT-base shape), CPU fwd+bwd+AdamW: "
              f"{masked / 2:.2f} s/sample with mask 0.75, {full / 2:.2f} s/sample without; x{full / masked:.2f}")
    if torch.cuda.is_available():
        print("4. GPU, ViT-B 16x224^2, mask 0.75, bf16:")
        gpu_section(args.steps)
    else:
        print("4. skipped: no GPU here")
    cpu_precision_and_compile(cfg, args.steps)


if __name__ == "__main__":
    main()
