"""`tvts inspect-shards DIR`: what is in a shard folder, and a look at a few samples.

Prints the manifest counts and, for the first samples of a split, the window times and
the K transcripts; `--png` also writes a contact sheet (one row of TSN frames per sample).
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from tvts import io
from tvts.data import shards
from tvts.data.inspect import contact_sheet, describe


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts inspect-shards", description=__doc__)
    p.add_argument("shard_dir", help="results/<exp>/shards")
    p.add_argument("--split", default="train", choices=shards.SPLITS)
    p.add_argument("-n", type=int, default=3, help="samples to show")
    p.add_argument("--frames", type=int, default=16, help="frames per sample in the contact sheet")
    p.add_argument("--png", help="write a contact sheet here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    manifest = json.loads((Path(args.shard_dir) / "manifest.json").read_text())
    print(f"counts: {manifest['counts']}\nrejects: {manifest['rejects']}")
    paths = shards.list_shards(args.shard_dir, args.split)
    samples = itertools.islice((s for p in paths for s in shards.iter_tar_samples(p)), args.n)
    rows = []
    for sample in samples:
        frames, meta = shards.decode_sample(sample, args.frames)
        print(describe(meta))
        rows.append(frames)
    if args.png and rows:
        with io.atomic_path(args.png) as tmp:
            contact_sheet(rows).save(tmp, format="PNG")
        print(f"contact sheet: {args.png}")
    return 0
