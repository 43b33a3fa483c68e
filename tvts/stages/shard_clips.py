"""Stage `shard_clips`: cut every window of a video from one decoder pass into WebDataset shards.

One job writes one part of the shard set (the workflow runs `dag.shard_parts` of them; part p
reads the align_asr parts assigned to it): it reads those aligned parts, cuts
`frames_per_window` frames spread over each window (scaled to the short side as they are
decoded, JPEG), and writes `<out>/{train,val}-NNNNNN.tar` split by video as the shards fill,
with `{split}-index.json`, `manifest.json` and `rejects.jsonl`. `shard_union` then lists the
parts in `set.json`. Workers decode videos in parallel; samples are written in input order, so
the shards are byte-identical for any number of workers.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.config import ShardConfig
from tvts.data.sharding import JsonlRows, shard_counts, upstream_rejects, write_shards
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.shard_clips")
SECTIONS = {"shard_clips": ShardConfig}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts shard-clips", description=__doc__)
    p.add_argument("--asr", nargs="+", required=True, help="part-N.jsonl files from align_asr")
    p.add_argument("--out", required=True, help="output directory for the shards (one part of the set)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: config)")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)
    scfg: ShardConfig = cfg["shard_clips"]
    workers = args.workers or scfg.workers
    rows = JsonlRows(args.asr)
    timings: dict = {}
    with tracking.stage_run("shard_clips", args.exp, cfg | {"workers": workers}, rule=args.rule,
                            run_name=f"{args.exp}/shard_clips/{Path(args.out).name}") as mlrun:
        io.remove_stale_temp_dirs(args.out)
        with io.atomic_dir(args.out) as tmp:
            with io.timer(timings, "shard_s"):
                sinks, rejects = write_shards(rows, tmp, scfg, workers)
            counts = shard_counts(sinks, rejects, sum(1 for _ in rows))
            if counts["windows"] == 0:  # shard_union fails when the whole set is empty; one part may be
                log.warning("no window of this part survived; see the align_asr manifests and rejects")
            timings["windows_per_s"] = counts["windows"] / max(timings["shard_s"], 1e-9)
            timings["windows_per_s_per_worker"] = timings["windows_per_s"] / workers
            rejects.write(tmp / "rejects.jsonl")
            io.write_manifest(tmp / "manifest.json", stage="shard_clips", inputs={"asr": args.asr},
                              config=cfg | {"workers": workers}, counts=counts | {"upstream_rejects": upstream_rejects(args.asr)},
                              rejects=rejects, timings=timings, outputs={s: k.shards for s, k in sinks.items()})
        mlrun.log_metrics(counts | {"rejects": rejects.counts()} | timings)
        mlrun.log_artifact(Path(args.out) / "manifest.json")
    log.info("wrote %s", {s: (k.n_samples, len(k.shards)) for s, k in sinks.items()})
    return 0
