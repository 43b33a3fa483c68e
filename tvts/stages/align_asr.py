"""Stage `align_asr`: clean YT-Temporal ASR, DTW-align it to the denoised text, cut windows.

Writes `<out>` (one JSON line per kept video: timed denoised words and K-clip windows),
plus `<stem>.manifest.json` and `<stem>.rejects.jsonl` beside it.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.align import align_videos
from tvts.data.config import AlignConfig, WindowConfig
from tvts.data.formats.yttemporal import read_video_list
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.align_asr")
SECTIONS = {"align_asr": AlignConfig, "windows": WindowConfig}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts align-asr", description=__doc__)
    p.add_argument("--list", required=True, help="YT-Temporal video list (TSV with a Name column)")
    p.add_argument("--root", help="corpus root the names are relative to (default: the list's folder)")
    p.add_argument("--part", type=int, default=0, help="which part of the list this job handles")
    p.add_argument("--parts", type=int, default=1, help="number of parts (round-robin over the list)")
    p.add_argument("--out", required=True, help="output part-N.jsonl")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)
    if not args.list or not Path(args.list).exists():
        raise SystemExit(f"align_asr: video list not found: {args.list} (config key data.yttemporal_list)")
    root = Path(args.root) if args.root else Path(args.list).parent
    entries = read_video_list(args.list)[args.part::args.parts]
    manifest_path, rejects_path = io.sidecars(args.out)
    timings: dict = {}
    with tracking.stage_run("align_asr", args.exp, cfg, rule=args.rule,
                            run_name=f"{args.exp}/align_asr/part-{args.part}") as mlrun:
        with io.timer(timings, "align_s"):
            rows, rejects, skipped = align_videos(entries, root, cfg)
        io.atomic_write_jsonl(args.out, rows)
        rejects.write(rejects_path)
        counts = {"videos_in": len(entries), "videos_kept": len(rows), "videos_rejected": len(rejects),
                  "windows": sum(len(r["windows"]) for r in rows),
                  "aligned_words": sum(r["n_aligned_words"] for r in rows),
                  "windows_skipped": dict(skipped)}
        timings["videos_per_s"] = len(entries) / max(timings["align_s"], 1e-9)
        io.write_manifest(manifest_path, stage="align_asr", inputs={"list": args.list, "root": str(root),
                          "part": args.part, "parts": args.parts}, config=cfg, counts=counts,
                          rejects=rejects, timings=timings, outputs={"jsonl": args.out})
        mlrun.log_metrics(counts | {"rejects": rejects.counts()} | timings)
        mlrun.log_artifact(manifest_path)
    log.info("part %d: %d videos kept, %d rejected %s", args.part, len(rows), len(rejects), rejects.counts())
    return 0
