"""Stage `fetch_videos`: download one part of the release's videos and captions through yt-dlp.

Writes `<out>` (`results/<exp>/fetch/part-<i>.jsonl`: one row per id of the part, present with
bytes, duration and sha256, or missing with a reason class), `<stem>.manifest.json` with the
counts, and `<stem>.rejects.jsonl` (unusable ids of the list). The files themselves go to the
store (`fetch.store`), which reruns reuse: a video already fetched and still matching its sha256
is not fetched again. A proxy with credentials and a cookies file come from
$TVTS_FETCH_PROXY / $TVTS_FETCH_COOKIES and are never logged.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.fetch import availability
from tvts.data.fetch.config import FetchConfig, cookies_of, logged_config, proxy_of
from tvts.data.fetch.download import fetch_ids
from tvts.data.fetch.ids import distinct_ids, part_of
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.fetch_videos")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts fetch-videos", description=__doc__.splitlines()[0])
    p.add_argument("--ids", help="release jsonl/jsonl.gz file or folder, or a .txt id list (default: fetch.ids)")
    p.add_argument("--part", type=int, default=0, help="which part of the ids this job fetches")
    p.add_argument("--parts", type=int, default=1, help="number of parts (round-robin over the distinct ids)")
    p.add_argument("--out", required=True, help="output part-N.jsonl")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg: FetchConfig = load_sections({"fetch": FetchConfig}, args.config_path, args.config_json)["fetch"]
    if args.ids:
        cfg = replace(cfg, ids=args.ids)
    if not cfg.ids:
        raise SystemExit("fetch_videos: no ids: set fetch.ids (the release's jsonl/jsonl.gz, or a list) or --ids")
    rejects = io.Rejects("fetch_videos")
    try:
        ids, listed = distinct_ids(cfg.ids, cfg.limit, rejects)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"fetch_videos: {err}") from None
    mine = part_of(ids, args.part, args.parts)
    params = {"fetch": logged_config(cfg), "proxy_set": bool(proxy_of(cfg)), "cookies_set": bool(cookies_of(cfg))}
    manifest_path, rejects_path = io.sidecars(args.out)
    timings: dict = {}
    with tracking.stage_run("fetch_videos", args.exp, params, rule=args.rule,
                            run_name=f"{args.exp}/fetch_videos/part-{args.part}") as mlrun:
        with io.timer(timings, "fetch_s"):
            rows = [r | {"listed": listed[r["id"]]} for r in fetch_ids(mine, cfg, cfg.store)]
        io.atomic_write_jsonl(args.out, rows)
        rejects.write(rejects_path)
        counts = availability.counts(rows)
        io.write_manifest(manifest_path, stage="fetch_videos", inputs={"ids": cfg.ids, "part": args.part,
                          "parts": args.parts, "store": cfg.store}, config=params, counts=counts,
                          rejects=rejects, timings=timings, outputs={"jsonl": args.out})
        mlrun.log_metrics(counts | {"rejects": rejects.counts()} | timings)
        mlrun.log_artifact(manifest_path)
    log.info("part %d: %d ok, %d missing %s", args.part, counts["ok"], counts["missing"],
             {k: v for k, v in counts.items() if k.startswith("missing_") and v})
    return 0
