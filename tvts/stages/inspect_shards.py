"""`tvts inspect-shards DIR`: what is in a shard folder or shard set, and a look at a few samples.

DIR is a shard folder (one part), a folder holding `set.json`, or a set file itself. Prints
each part's manifest counts and, for the first samples of a split, the window times and the K
transcripts (a pair sample's caption); `--png` also writes a contact sheet (one row of TSN
frames per sample, of any frame size).
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from tvts import io
from tvts.data import shards
from tvts.data.inspect import contact_sheet, describe, sample_frames, shard_parts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts inspect-shards", description=__doc__)
    p.add_argument("shard_dir", help="results/<exp>/shards (a part, or a set with set.json)")
    p.add_argument("--split", default="train", choices=shards.SPLITS)
    p.add_argument("-n", type=int, default=3, help="samples to show")
    p.add_argument("--frames", type=int, default=16, help="frames per sample in the contact sheet")
    p.add_argument("--png", help="write a contact sheet here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parts = shard_parts(args.shard_dir)
    except ValueError as err:
        raise SystemExit(f"inspect-shards: {err}") from None
    for part in parts:
        print_manifest(part, prefix=f"{part.name}: " if len(parts) > 1 else "")
    paths = [p for part in parts for p in shards.list_shards(part, args.split)]
    samples = itertools.islice(((p, s) for p in paths for s in shards.iter_tar_samples(p)), args.n)
    rows = []
    for path, sample in samples:
        frames, meta = sample_frames(sample, args.frames, path)
        print(describe(meta))
        rows.append(frames)
    if args.png and rows:
        with io.atomic_path(args.png) as tmp:
            contact_sheet(rows).save(tmp, format="PNG")
        print(f"contact sheet: {args.png}")
    return 0


def print_manifest(part: Path, prefix: str = "") -> None:
    path = part / "manifest.json"
    if not path.is_file():
        print(f"{prefix}no manifest.json in {part}")
        return
    manifest = json.loads(path.read_text())
    print(f"{prefix}counts: {manifest.get('counts')}\n{prefix}rejects: {manifest.get('rejects')}")
