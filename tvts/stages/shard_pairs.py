"""Stage `shard_pairs`: captioned images (CC3M) and clips (WebVid) into WebDataset shards.

Reads CC3M (a caption TSV with its image folder, or img2dataset tars) and WebVid (a TSV or the
release CSV with its videos folder), keeps the pairs of part `--part` of `--parts`, and writes
`<out>/{image,video}/{train,val}-NNNNNN.tar` with their shard indexes, plus `manifest.json` and
`rejects.jsonl` (every pair left out, by reason: the readers' and this stage's). Either source
may be omitted. The output folder is written atomically and is byte-reproducible.
"""
from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.formats.common import FormatError
from tvts.data.pairs import PairShardConfig, part_of, write_pair_shards
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.shard_pairs")
SECTIONS = {"shard_pairs": PairShardConfig}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts shard-pairs", description=__doc__)
    p.add_argument("--cc3m", nargs="*", default=[], help="CC3M caption TSV, or img2dataset .tar files")
    p.add_argument("--cc3m-images", default=None, help="the folder the TSV's image paths are relative to")
    p.add_argument("--webvid", default=None, help="WebVid TSV (webvid_train.tsv) or release CSV (results_2M_*.csv)")
    p.add_argument("--webvid-videos", default=None, help="the videos folder (videos/<page_dir>/<videoid>.mp4)")
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder (results/<exp>/pairs/part-N)")
    add_common_args(p)
    return p


def read_sources(args: argparse.Namespace, rejects: io.Rejects):
    """Every pair of both sources, CC3M first, as the readers give them (their rejects counted)."""
    from tvts.data.formats.cc3m import read_cc3m
    from tvts.data.formats.webvid import read_webvid

    sources = []
    if args.cc3m:
        tars = [Path(p) for p in args.cc3m]
        table_or_tars = tars if tars[0].suffix == ".tar" else tars[0]
        # probe=False: this stage decodes every file itself, and counts what fails to decode
        sources.append(read_cc3m(table_or_tars, Path(args.cc3m_images) if args.cc3m_images else None, rejects,
                                 probe=False))
    if args.webvid:
        sources.append(read_webvid(Path(args.webvid), Path(args.webvid_videos or "."), rejects, probe=False))
    return itertools.chain.from_iterable(sources)


def own_rejects(read: io.Rejects, part: int, parts: int) -> list[dict]:
    """The readers' rejects of this part's pairs: every part reads the whole tables, and each
    pair's reject is counted once, by the part its id hashes to."""
    return [r for r in read.rows if part_of(r["item"], parts) == part]


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    if not 0 <= args.part < args.parts:
        raise SystemExit(f"shard_pairs: --part {args.part} is not in 0..{args.parts - 1}")
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)
    scfg: PairShardConfig = cfg["shard_pairs"]
    rejects, timings = io.Rejects("shard_pairs"), {}
    inputs = {"cc3m": args.cc3m, "cc3m_images": args.cc3m_images, "webvid": args.webvid,
              "webvid_videos": args.webvid_videos, "part": args.part, "parts": args.parts}
    with tracking.stage_run("shard_pairs", args.exp, cfg, rule=args.rule,
                            run_name=f"{args.exp}/shard_pairs/part-{args.part}") as mlrun:
        io.remove_stale_temp_dirs(args.out)
        with io.atomic_dir(args.out) as tmp:
            with io.timer(timings, "shard_s"):
                read = io.Rejects("shard_pairs")
                try:
                    sinks = write_pair_shards(read_sources(args, read), tmp, scfg, rejects, args.part, args.parts)
                except FormatError as err:  # a malformed table: one line naming file:line, no partial output
                    raise SystemExit(f"shard_pairs: {err}") from None
            rejects.rows[:0] = own_rejects(read, args.part, args.parts)
            counts = sinks.counts() | {"rejected": len(rejects)}
            timings["pairs_per_s"] = counts["pairs"] / max(timings["shard_s"], 1e-9)
            rejects.write(tmp / "rejects.jsonl")
            io.write_manifest(tmp / "manifest.json", stage="shard_pairs", inputs=inputs, config=cfg, counts=counts,
                              rejects=rejects, timings=timings,
                              outputs={f"{k}/{s}": sink.shards for (k, s), sink in sinks.sinks.items()})
        mlrun.log_metrics(counts | {f"rejects/{r}": n for r, n in rejects.counts().items()} | timings)
        mlrun.log_artifact(Path(args.out) / "manifest.json")
    log.info("part %d: %d pairs, %d rejected %s", args.part, counts["pairs"], len(rejects), rejects.counts())
    return 0
