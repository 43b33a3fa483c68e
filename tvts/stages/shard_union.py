"""Stage `shard_union`: list the parts that `shard_clips` wrote as one shard set.

Writes `<out>` (`results/<exp>/shards/set.json`, atomically):
`{"version": 1, "parts": [...], "counts": {...}, "rejects": {...}, "parts_md5": {...}}`, with
the parts relative to the set file's folder, their manifests' counts and rejects summed, and
each part manifest's md5 (what a trainer's fingerprint of its data rests on). Every consumer
of the shards (`--shards`) takes this file. Fails, naming the part, when one is missing.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io, tracking
from tvts.data.sharding import ShardSetIncomplete, shard_set
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.shard_union")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts shard-union", description=__doc__)
    p.add_argument("--parts", nargs="+", required=True, help="the part folders shard_clips wrote, in order")
    p.add_argument("--out", required=True, help="the set file to write (set.json)")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with tracking.stage_run("shard_union", args.exp, {"parts": len(args.parts)}, rule=args.rule) as mlrun:
        try:
            content = shard_set(args.parts, out.parent)
        except ShardSetIncomplete as err:
            raise SystemExit(str(err)) from None
        io.atomic_write_json(out, content)
        mlrun.log_metrics(content["counts"] | {"parts": len(args.parts), "rejects": content["rejects"]})
        mlrun.log_artifact(out)
    log.info("%s: %d parts, %d windows", out, len(args.parts), content["counts"]["windows"])
    return 0
