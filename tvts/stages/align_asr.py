"""Stage `align_asr`: clean YT-Temporal ASR, DTW-align it to the denoised text, cut windows.

Writes `<out>` (one JSON line per kept video: timed denoised words and K-clip windows),
plus `<stem>.manifest.json` and `<stem>.rejects.jsonl` beside it.
"""
from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from tvts import io, tracking
from tvts.io import RejectError
from tvts.config import AlignConfig, WindowConfig, load_sections
from tvts.data import asr
from tvts.data.formats.yttemporal import VideoEntry, load_annotation, read_video_list
from tvts.data.windows import plan_windows, window_span, window_to_dict
from tvts.stages.common import add_common_args, setup_logging, timer

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


def sidecars(out: str | Path) -> tuple[Path, Path]:
    """The manifest and rejects paths written beside a `.jsonl` output."""
    out = Path(out)
    stem = out.name.removesuffix(".jsonl")
    return out.with_name(f"{stem}.manifest.json"), out.with_name(f"{stem}.rejects.jsonl")


def align_video(entry: VideoEntry, root: Path, cfg: dict) -> tuple[dict, Counter]:
    """Align one video and cut its windows.

    Returns:
        The output row and the counts of windows skipped by reason.
    Raises:
        RejectError: the video is skipped (reason in the error).
    """
    ann = load_annotation(entry, root)
    if not entry.video_path(root).exists():
        raise RejectError("missing_video", str(entry.video_path(root)))
    words, times = asr.clean_asr_words(ann.subtitles)
    den = asr.denoised_words(ann.denoised)
    asr.check_transcript(words, den, cfg["align_asr"])
    al = asr.align_asr_to_denoised(words, times, den, cfg["align_asr"])
    windows, skipped = plan_windows(entry.video_id, ann.duration, al.words, al.times, cfg["windows"])
    if not windows:
        wcfg = cfg["windows"]
        too_short = ann.duration < window_span(wcfg.k, min(wcfg.clip_lengths), wcfg.gap_s)
        raise RejectError("video_shorter_than_window" if too_short else "no_valid_window",
                          f"duration {ann.duration:.1f}s, {sum(skipped.values())} windows lacked words")
    row = {"id": entry.video_id, "video": str(entry.video_path(root)), "duration": ann.duration,
           "n_asr_words": len(words), "n_denoised_words": len(den), "n_aligned_words": len(al.words),
           "dtw_cost": al.cost, "words": [[w, round(float(t), 3)] for w, t in zip(al.words, al.times)],
           "windows": [window_to_dict(w) for w in windows]}
    return row, skipped


def run(entries: list[VideoEntry], root: Path, cfg: dict) -> tuple[list[dict], io.Rejects, Counter]:
    rows, rejects, skipped = [], io.Rejects("align_asr"), Counter()
    for entry in tqdm(entries, desc="align_asr", unit="video", mininterval=2):
        try:
            row, skip = align_video(entry, root, cfg)
        except RejectError as err:
            rejects.add(entry.video_id, err.reason, err.detail)
            continue
        rows.append(row)
        skipped.update(skip)
    return rows, rejects, skipped


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)
    if not args.list or not Path(args.list).exists():
        raise SystemExit(f"align_asr: video list not found: {args.list} (config key data.yttemporal_list)")
    root = Path(args.root) if args.root else Path(args.list).parent
    entries = read_video_list(args.list)[args.part::args.parts]
    manifest_path, rejects_path = sidecars(args.out)
    timings: dict = {}
    with tracking.stage_run("align_asr", args.exp, cfg, rule=args.rule,
                            run_name=f"{args.exp}/align_asr/part-{args.part}") as mlrun:
        with timer(timings, "align_s"):
            rows, rejects, skipped = run(entries, root, cfg)
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
