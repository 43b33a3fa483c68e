"""Stage `join_fetched`: the fetch parts as one availability snapshot, and the fetched videos as a
YT-Temporal corpus that `align_asr` reads.

Writes `--availability` (`availability.json`: every id, present or missing with its reason; the
counts go to MLflow) and `--list` (`data.yttemporal_list`) with the corpus under its folder:
`<subset>/data/<id>.mp4` and `<subset>/annotations/<id>.json` (tvts.data.fetch.join). The list is
written last, so a killed join leaves no list to align.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.fetch import availability
from tvts.data.fetch.config import FetchConfig, logged_config
from tvts.data.fetch.join import join
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.join_fetched")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts join-fetched", description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", required=True, help="the fetch_videos part-N.jsonl files")
    p.add_argument("--transcripts", nargs="*", default=[], help="the transcribe part-N.jsonl files, if any")
    p.add_argument("--availability", required=True, help="availability.json to write")
    p.add_argument("--list", required=True, help="the video list to write (TSV, Name column)")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg: FetchConfig = load_sections({"fetch": FetchConfig}, args.config_path, args.config_json)["fetch"]
    try:
        snap = availability.snapshot(args.parts)
    except FileNotFoundError as err:
        raise SystemExit(f"join_fetched: {err}") from None
    rows = [r for p in args.parts for r in io.read_jsonl(p)]
    transcripts = {r["id"]: r for p in args.transcripts for r in io.read_jsonl(p)}
    with tracking.stage_run("join_fetched", args.exp, {"fetch": logged_config(cfg)}, rule=args.rule) as mlrun:
        io.atomic_write_json(args.availability, snap)
        counts, rejects = join(rows, cfg.ids or None, transcripts, args.list, cfg.subset)
        manifest = Path(args.availability).with_name("join.manifest.json")
        io.write_manifest(manifest, stage="join_fetched", inputs={"parts": args.parts, "transcripts": args.transcripts},
                          config={"fetch": logged_config(cfg)}, counts=counts, rejects=rejects,
                          outputs={"availability": args.availability, "list": args.list})
        mlrun.log_metrics({f"availability/{k}": v for k, v in snap["counts"].items()} | counts | {"rejects": rejects.counts()})
        mlrun.log_artifact(args.availability)
    log.info("%d of %d ids present, %d joined into %s", snap["counts"]["ok"], snap["counts"]["ids"], counts["joined"], args.list)
    return 0
