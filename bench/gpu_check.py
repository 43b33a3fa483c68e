"""`make gpu-check`: on the first GPU, prove in minutes every GPU path of this workflow.

Run: `.venv/bin/python bench/gpu_check.py [--cpu] [--no-compile] [--out PATH]`. Writes one JSON
(default results/gpu_check/gpu_check.json) and one MLflow run (stage `gpu_check`, its numbers as
metrics, the JSON as an artifact). Sections (docs/benchmarks.md lists every field):

  versions        device, driver, CUDA, cuDNN, NCCL and torch versions
  collectives     NCCL init; with 2 GPUs a 2-rank NCCL all-gather whose gradient must equal
                  gloo's (on CPU: the 2-rank gloo all-gather against its analytic gradient)
  smoke_pretrain  the smoke DAG's pretraining (its corpus, alignment and shards made here) in bf16,
                  eager and compiled: wall time, samples/s, final loss
  train_step      ViT-B 16x224² (mask 0.75) train-step samples/s and MFU in bf16, compile off and
                  on, at the largest batch that fits (on CPU: the smoke model at its batch size)
  nvjpeg          a batch of stored JPEG frames decoded by nvJPEG against the CPU decoder:
                  max pixel difference and ms/sample each (on CPU: torchvision's libjpeg batch)
  torchcodec      torchcodec's GPU decode of the real-encoder fixture against PyAV's frames

Without a GPU (and without --cpu) it prints one line and exits 0. `--cpu` runs every section
that can run on the CPU (tests/test_gpu_check.py runs it). A section that fails records its
error and the others still run; sections stop starting after --budget-s (default 420 s), so the
whole check stays under 8 minutes on one H100.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tvts import io  # noqa: E402

SMOKE = ROOT / "config" / "smoke.yaml"
FRAME_TOLERANCE = 3      # max |pixel difference| (uint8) between two JPEG decoders (IDCT rounding)


class Check:
    """What every section reads: the device, the switches, a scratch folder and the clock."""

    def __init__(self, args: argparse.Namespace):
        self.device = torch.device("cpu" if args.cpu else "cuda")
        self.compile, self.budget_s, self.t0 = not args.no_compile, args.budget_s, time.perf_counter()
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))
        self.shards = Path(args.shards) if args.shards else None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)


# --------------------------------------------------------------------------------- versions

def versions(check: Check) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(check.device)}
    if check.cuda:
        props = torch.cuda.get_device_properties(check.device)
        out |= {"gpu": props.name, "gpu_memory_gb": props.total_memory / 2**30, "gpus": torch.cuda.device_count(),
                "capability": f"{props.major}.{props.minor}", "nccl": nccl_version(),
                "driver": nvidia_smi("driver_version")}
    return out


def nccl_version() -> str:
    v = torch.cuda.nccl.version()
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def nvidia_smi(field: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError) as err:
        return f"unknown ({err.__class__.__name__})"


# ------------------------------------------------------------------------------ collectives

def collectives(check: Check) -> dict:
    """NCCL init (one rank), and the 2-rank all-gather gradient per backend."""
    out = {}
    backends = ["gloo"]
    if check.cuda:
        out["nccl_init"] = gather_grads("nccl", world=1) is not None
        if torch.cuda.device_count() >= 2:
            backends.append("nccl")
    grads = {b: gather_grads(b, world=2) for b in backends}
    expected = 2 * torch.arange(8.0).view(2, 2, 2)        # every rank's loss reaches each slice: x world
    out["gloo_grad_matches_analytic"] = bool(torch.equal(grads["gloo"], expected))
    if "nccl" in grads:
        out["nccl_grad_matches_gloo"] = bool(torch.equal(grads["nccl"], grads["gloo"]))
    else:
        out["nccl_2_rank"] = "skipped: fewer than 2 GPUs" if check.cuda else "skipped: no GPU"
    return out


def gather_grads(backend: str, world: int) -> torch.Tensor:
    """(world, rows, cols) gradient each rank's input got through `gather_with_grad`."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_gather_worker, args=(backend, world, port, tmp), nprocs=world, join=True)
        return torch.stack([torch.load(Path(tmp) / f"{r}.pt") for r in range(world)])


def _gather_worker(rank: int, backend: str, world: int, port: int, tmp: str) -> None:
    import torch.distributed as tdist

    from tvts.train.distributed import gather_with_grad

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    tdist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                             device_id=device if backend == "nccl" else None)
    try:
        ones = torch.ones(1, device=device)
        tdist.all_reduce(ones)                       # one collective whatever the world size
        if ones.item() != world:
            raise RuntimeError(f"{backend} all_reduce gave {ones.item()}, not {world}")
        x = torch.full((2, 2), float(rank + 1), device=device, requires_grad=True)
        weights = torch.arange(4.0 * world, device=device).view(2 * world, 2)
        (gather_with_grad(x) * weights).sum().backward()
        torch.save(x.grad.cpu(), Path(tmp) / f"{rank}.pt")
        # Tear down together: a gloo rank destroyed while its peer is still in a collective's
        # backward can abort ("terminate called without an active exception", seen once in CI).
        tdist.barrier()
    finally:
        tdist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- smoke pretrain

def smoke_shards(check: Check) -> Path:
    """The smoke corpus, aligned and sharded (as the smoke DAG makes them), once per check."""
    shards = check.shards or check.tmp / "shards"
    if shards.exists():
        return shards
    from tvts.config import load_sections
    from tvts.data.demo import DemoConfig, generate_demo
    from tvts.stages import align_asr, shard_clips

    corpus = check.tmp / "corpus"
    generate_demo(corpus, load_sections({"demo": DemoConfig}, str(SMOKE))["demo"], workers=2)
    part = check.tmp / "asr" / "part-0.jsonl"
    common = ["--config", str(SMOKE), "--exp", "gpu_check"]
    if align_asr.main(["--list", str(corpus / "yttemporal/videos.tsv"), "--out", str(part), *common]) != 0 or \
            shard_clips.main(["--asr", str(part), "--out", str(shards), "--workers", "2", *common]) != 0:
        raise RuntimeError("the smoke data stages failed")
    return shards


def smoke_pretrain(check: Check) -> dict:
    import yaml

    from tvts.stages import pretrain

    shards, out = smoke_shards(check), {}
    for compiled in ([False, True] if check.compile else [False]):
        if compiled and check.left_s() < 150:
            out["compile"] = "skipped: time budget"
            break
        raw = yaml.safe_load(SMOKE.read_text())
        raw["pretrain"]["runtime"] |= {"amp": "bf16", "compile": compiled}
        cfg = check.tmp / f"smoke-{compiled}.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        run = check.tmp / f"pretrain-{compiled}"
        t0 = time.perf_counter()
        code = pretrain.main(["--shards", str(shards), "--out", str(run), "--config", str(cfg), "--exp", "gpu_check",
                              *(["--cpu"] if not check.cuda else [])])
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        perf = next((r for r in reversed(log) if "perf/samples_per_s_per_device" in r), {})
        out["compile" if compiled else "eager"] = {
            "exit_code": code, "wall_s": time.perf_counter() - t0, "steps": max((r["step"] for r in log), default=0),
            "final_loss": next((r["train/loss"] for r in reversed(log) if "train/loss" in r), float("nan")),
            "samples_per_s": perf.get("perf/samples_per_s_per_device", float("nan"))}
    if not check.compile:
        out["compile"] = "skipped: --no-compile"
    return out


# ------------------------------------------------------------------------------- train step

def train_step(check: Check) -> dict:
    """bf16 samples/s and MFU, compile off then on, at the largest batch that fits (GPU)."""
    from train_step import measure, paper_config

    from tvts.config import load_sections
    from tvts.train.config import PretrainConfig

    cfg = paper_config() if check.cuda else load_sections({"pretrain": PretrainConfig}, str(SMOKE))["pretrain"]
    cfg = replace(cfg, runtime=replace(cfg.runtime, amp="bf16"))
    batches = (8, 16, 32, 48, 64, 96, 128, 192, 256) if check.cuda else (cfg.data.batch_size,)
    out = {"model": "ViT-B/16 16x224^2 + DistilBERT-base shape" if check.cuda else "smoke (config/smoke.yaml)",
           "mask_ratio": cfg.model.mask_ratio}
    best = None
    for b in batches:
        if check.left_s() < 60:
            break
        try:
            best = (b, measure(cfg, b, check.device, compile_=False))
        except torch.OutOfMemoryError:
            break
        finally:
            if check.cuda:
                torch.cuda.empty_cache()
    if best is None:
        return out | {"eager": "skipped: no batch fits or no time left"}
    out |= {"batch": best[0], "eager": best[1]}
    if not check.compile or check.left_s() < 120:
        return out | {"compile": "skipped: --no-compile" if not check.compile else "skipped: time budget"}
    try:
        out["compile"] = measure(cfg, best[0], check.device, compile_=True)
    except torch.OutOfMemoryError:
        out["compile"] = "out of memory at the eager batch"
    return out


# ----------------------------------------------------------------------------------- nvjpeg

def nvjpeg(check: Check) -> dict:
    """One batch of stored frames (the shards' JPEGs) decoded by `decode_batch` on the device and
    by the workers' CPU decoder; pixels compared before normalisation."""
    from tvts.data.shards import decode_rgb, iter_tar_samples, list_shards

    shards = smoke_shards(check)
    jpegs = [v for s in iter_tar_samples(list_shards(shards, "train")[0]) for k, v in sorted(s.items())
             if k.endswith(".jpg")][:64]
    t0 = time.perf_counter()
    cpu = np.stack([decode_rgb(j, "gpu_check", "frame") for j in jpegs])             # (N, H, W, 3)
    cpu_decode = (time.perf_counter() - t0) / len(jpegs)
    dev, dev_ms = device_decode(jpegs, check.device)
    diff = np.abs(dev.astype(np.int16) - cpu.astype(np.int16))
    return {"frames": len(jpegs), "decoder": "nvjpeg" if check.cuda else "torchvision libjpeg (cpu)",
            "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()),
            "within_tolerance": bool(diff.max() <= FRAME_TOLERANCE), "tolerance": FRAME_TOLERANCE,
            "ms_per_frame_device": dev_ms, "ms_per_frame_cpu_decoder": cpu_decode * 1000}


def device_decode(jpegs: list[bytes], device: torch.device) -> tuple[np.ndarray, float]:
    """torchvision's batched decode_jpeg on `device` (nvJPEG on cuda): (N, H, W, 3) and ms/frame
    (best of 3, after a warm-up)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return torch.stack(imgs).permute(0, 2, 3, 1).cpu().numpy(), best / len(jpegs) * 1000


# ------------------------------------------------------------------------------- torchcodec

def torchcodec(check: Check) -> dict:
    """The real-encoder fixture (libx264, tests/realvideo.py) decoded by torchcodec on the device
    against PyAV, frame for frame."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError:
        return {"skipped": "torchcodec is not installed (it is not a dependency of this project)"}
    import av

    sys.path.insert(0, str(ROOT / "tests"))
    from realvideo import encode_mp4

    path = check.tmp / "real.mp4"
    encode_mp4(path, 640, 272, seconds=2.0)
    with av.open(str(path)) as container:
        ref = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    t0 = time.perf_counter()
    got = VideoDecoder(str(path), device=str(check.device))[:].permute(0, 2, 3, 1).cpu().numpy()
    ms = (time.perf_counter() - t0) / max(1, len(got)) * 1000
    diff = np.abs(got.astype(np.int16)[:len(ref)] - ref.astype(np.int16)[:len(got)])
    return {"frames": len(got), "frames_pyav": len(ref), "max_abs_diff": int(diff.max()),
            "mean_abs_diff": float(diff.mean()), "ms_per_frame": ms}


SECTIONS = {"versions": versions, "collectives": collectives, "smoke_pretrain": smoke_pretrain,
            "train_step": train_step, "nvjpeg": nvjpeg, "torchcodec": torchcodec}


def run_sections(check: Check) -> dict:
    report = {}
    for name, section in SECTIONS.items():
        if check.left_s() <= 0:
            report[name] = {"skipped": "time budget spent"}
            continue
        t0 = time.perf_counter()
        try:
            report[name] = section(check)
        except Exception as err:  # noqa: BLE001 - one broken path must not hide the others
            report[name] = {"error": f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"}
        report[name]["section_s"] = time.perf_counter() - t0
        print(f"gpu-check: {name}: {json.dumps(report[name], default=str)[:400]}", flush=True)
    return report


def numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    """Every number (and bool) of the report as `section/key` metrics."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= numbers(v, key + "/")
        elif isinstance(v, (bool, int, float)) and not isinstance(v, str) and np.isfinite(float(v)):
            out[key] = float(v)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="run every section that can run on the CPU")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--budget-s", type=float, default=420.0, help="start no section after this many seconds")
    p.add_argument("--shards", help="smoke window shards to reuse (default: made from the smoke corpus here)")
    p.add_argument("--out", default=str(ROOT / "results/gpu_check/gpu_check.json"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU here, nothing checked (--cpu runs the sections that can run on the CPU)")
        return 0
    from tvts import tracking

    check = Check(args)
    try:
        params = {"device": str(check.device), "compile": check.compile}
        with tracking.stage_run("gpu_check", "gpu_check", params) as run:
            report = {"device": str(check.device), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "sections": run_sections(check)}
            report["total_s"] = time.perf_counter() - check.t0
            io.atomic_write_json(Path(args.out), report)
            run.log_metrics(numbers(report["sections"]))
            run.log_artifact(Path(args.out))
    finally:
        shutil.rmtree(check.tmp, ignore_errors=True)
    print(f"gpu-check: wrote {args.out} in {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
