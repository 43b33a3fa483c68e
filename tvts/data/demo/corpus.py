"""`generate_demo`: every item, made in worker processes, then the lists, labels and manifest.

Items come back in job order whatever the number of workers, and each item's bytes
depend only on (seed, subset, index), so the corpus is the same with 1 worker or 16.
"""
from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.downstream import make_msrvtt_clip, make_ssv2_clip
from tvts.data.demo.encode import encoder_versions
from tvts.data.demo.layout import MSRVTT_SPLIT_DIR, make_dirs
from tvts.data.demo.pairs import make_pair_item, pair_jobs, write_pair_tables
from tvts.data.demo.vocab import ssv2_class_name
from tvts.data.demo.yttemporal import BAD_KINDS, make_yt_video
from tvts.io import atomic_dir, dumps


def _make_item(job: tuple[DemoConfig, str, str, int]) -> dict:
    """Worker entry point (module level, so spawn can pickle it)."""
    cfg, root, subset, index = job
    if subset == "yttemporal":
        return make_yt_video(cfg, Path(root), index)
    if subset == "yttemporal_bad":
        return make_yt_video(cfg, Path(root), index, bad=BAD_KINDS[index])
    if subset.startswith("ssv2_"):
        return make_ssv2_clip(cfg, Path(root), subset[len("ssv2_"):], index)
    if subset in ("cc3m", "webvid"):
        return make_pair_item(cfg, Path(root), subset, index)
    return make_msrvtt_clip(cfg, Path(root), index)


def _jobs(cfg: DemoConfig, root: Path) -> list[tuple[DemoConfig, str, str, int]]:
    n_classes = len(cfg.ssv2_classes)
    counts = [("yttemporal", cfg.n_videos), ("yttemporal_bad", len(BAD_KINDS) if cfg.bad_items else 0),
              ("ssv2_train", cfg.ssv2_train_per_class * n_classes),
              ("ssv2_validation", cfg.ssv2_val_per_class * n_classes),
              ("msrvtt", cfg.msrvtt_train + cfg.msrvtt_test)]
    return [(cfg, str(root), subset, i) for subset, n in counts for i in range(n)] + \
        [(cfg, str(root), subset, i) for subset, i in pair_jobs(cfg)]


def _run_jobs(jobs: list, workers: int) -> list[dict]:
    """Run the item jobs; results come back in job order either way."""
    if workers <= 1:
        return [_make_item(job) for job in jobs]
    # spawn: safe under threads and the same on every platform. An executor (not a
    # Pool) so that a dying worker raises BrokenProcessPool instead of being respawned.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_make_item, jobs, chunksize=2))


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _write_yttemporal(root: Path, rows: list[dict]) -> dict:
    lines = ["Name\tid\tduration"] + [f"{r['name']}\t{r['id']}\t{r['duration']:.3f}" for r in rows]
    _write_text(root / "yttemporal" / "videos.tsv", "\n".join(lines) + "\n")
    events = [dumps({"id": r["id"], "bad": r["bad"], "events": r["events"]}, indent=None) for r in rows]
    _write_text(root / "yttemporal" / "demo_events.jsonl", "".join(e + "\n" for e in events))
    good = [r for r in rows if not r["bad"]]
    return {"videos": len(good), "bad_items": len(rows) - len(good),
            "events": sum(len(r["events"]) for r in good),
            "hours": round(sum(r["duration"] for r in good) / 3600, 3)}


def _write_ssv2(root: Path, cfg: DemoConfig, train: list[dict], val: list[dict]) -> dict:
    names = sorted(ssv2_class_name(t) for t in cfg.ssv2_classes)
    _write_text(root / "ssv2" / "something-something-v2-labels.json",
                dumps({n: str(k) for k, n in enumerate(names)}) + "\n")
    _write_text(root / "ssv2" / "train.json", dumps([r["entry"] for r in train]) + "\n")
    _write_text(root / "ssv2" / "validation.json", dumps([r["entry"] for r in val]) + "\n")
    return {"classes": len(names), "train": len(train), "validation": len(val)}


def _write_msrvtt(root: Path, cfg: DemoConfig, rows: list[dict]) -> dict:
    annotations = [{"image_id": r["id"], "caption": c} for r in rows for c in r["captions"]]
    for k, a in enumerate(annotations):
        a["id"] = k
    _write_text(root / "msrvtt" / "annotation" / "MSR_VTT.json",
                dumps({"images": [{"id": r["id"]} for r in rows], "annotations": annotations}) + "\n")
    splits = root / "msrvtt" / MSRVTT_SPLIT_DIR
    train, test = rows[: cfg.msrvtt_train], rows[cfg.msrvtt_train:]
    _write_text(splits / "train_list_jsfusion.txt", "".join(r["id"] + "\n" for r in train))
    _write_text(splits / "val_list_jsfusion.txt", "".join(r["id"] + "\n" for r in test))
    return {"train": len(train), "test": len(test), "captions": len(annotations)}


def _write_indexes(root: Path, cfg: DemoConfig, results: list[dict]) -> dict:
    """Write the lists, labels and manifest from the per-item results."""
    by_kind: dict[str, list[dict]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    summary = {"yttemporal": _write_yttemporal(root, by_kind.get("yttemporal", [])),
               "ssv2": _write_ssv2(root, cfg, by_kind.get("ssv2_train", []), by_kind.get("ssv2_validation", [])),
               "msrvtt": _write_msrvtt(root, cfg, by_kind.get("msrvtt", []))}
    summary |= write_pair_tables(root, cfg, by_kind.get("cc3m", []), by_kind.get("webvid", []))
    files = [p for p in root.rglob("*") if p.is_file()]
    summary["files"] = len(files) + 1                # + the manifest
    summary["bytes"] = sum(p.stat().st_size for p in files)  # without the manifest
    manifest = {"stage": "demo", "config": asdict(cfg), "counts": summary, "versions": encoder_versions()}
    _write_text(root / "manifest.json", dumps(manifest) + "\n")
    return summary


def generate_demo(out_dir: Path, cfg: DemoConfig, workers: int = 1) -> dict:
    """Write the whole synthetic corpus atomically under `out_dir`.

    Args:
        out_dir: the corpus root; replaced as a whole on success.
        cfg: the demo config.
        workers: processes to render and encode with (1 = in this process). The
            bytes written do not depend on it. Workers are spawned, so with more
            than one the caller's main module must be import-safe
            (`if __name__ == "__main__":`).
    Returns:
        A summary: counts per subset, number of files and total bytes.
    """
    with atomic_dir(out_dir) as tmp:
        make_dirs(tmp)
        results = _run_jobs(_jobs(cfg, tmp), workers)
        return _write_indexes(tmp, cfg, results)


def load_events(path: Path) -> list[dict]:
    """The ground-truth events of demo_events.jsonl (for diagnostics and tests)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
