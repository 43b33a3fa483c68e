"""The video ids to fetch: the MERLOT release's jsonl/jsonl.gz partitions, or a plain list.

A release line is a JSON object; its id is the first of `RELEASE_ID_KEYS` present. The other
fields the join reads (`denoised`, `title`, `description`) stay in the row. A plain list has
one id per line (`#` comments and blank lines skipped). A YouTube id is 11 characters of
[A-Za-z0-9_-]; anything else is counted as a bad id, never fetched.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Iterator

from tvts.data.formats.common import FormatError
from tvts.io import Rejects

RELEASE_ID_KEYS = ("id", "video_id", "vid", "_id")
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
RELEASE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")


def release_files(source: str | Path) -> list[Path]:
    """The files behind `fetch.ids`: the file itself, or a folder's release partitions (sorted).

    Raises:
        FileNotFoundError: naming the path (config key fetch.ids).
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.name.endswith(RELEASE_SUFFIXES))
        if not files:
            raise FileNotFoundError(f"fetch.ids: no *.jsonl or *.jsonl.gz files in {source}")
        return files
    if not source.is_file():
        raise FileNotFoundError(f"fetch.ids: {source} not found")
    return [source]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from enumerate(f, 1)


def read_rows(source: str | Path, rejects: Rejects) -> Iterator[dict]:
    """Every release row (or `{"id": ...}` for a plain list), in file order; bad ids counted.

    Raises:
        FormatError: a release line that is not a JSON object (file:line).
    """
    for path in release_files(source):
        release = path.name.endswith(RELEASE_SUFFIXES)
        for n, line in _lines(path):
            row = _row(line, path, n) if release else _list_row(line)
            if row is None:
                continue
            vid = row.get("id")
            if not isinstance(vid, str) or not YOUTUBE_ID.fullmatch(vid):
                rejects.add(f"{path}:{n}", "bad_id", f"{vid!r} is not a YouTube id")
                continue
            yield row


def _row(line: str, path: Path, n: int) -> dict | None:
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise FormatError(path, f"not JSON: {err}", n) from None
    if not isinstance(row, dict):
        raise FormatError(path, "a release line must be a JSON object", n)
    vid = next((row[k] for k in RELEASE_ID_KEYS if k in row), None)
    return row | {"id": vid}


def _list_row(line: str) -> dict | None:
    text = line.split("#", 1)[0].strip()
    return {"id": text} if text else None


def distinct_ids(source: str | Path, limit: int, rejects: Rejects) -> tuple[list[str], dict[str, int]]:
    """The distinct ids in order of first appearance (the first `limit`, 0 = all), and how many
    times each was listed; a repeat is downloaded once."""
    order: list[str] = []
    listed: dict[str, int] = {}
    for row in read_rows(source, rejects):
        vid = row["id"]
        if vid not in listed:
            if limit and len(order) >= limit:
                continue
            order.append(vid)
            listed[vid] = 0
        listed[vid] += 1
    return order, listed


def part_of(ids: list[str], part: int, parts: int) -> list[str]:
    """Round-robin over the distinct ids, like align_asr over its list."""
    return ids[part::parts]


def release_fields(source: str | Path, wanted: set[str]) -> dict[str, dict]:
    """The release rows of the `wanted` ids (the first row of each; a plain list gives `{id}`)."""
    found: dict[str, dict] = {}
    for row in read_rows(source, Rejects("join")):
        if row["id"] in wanted and row["id"] not in found:
            found[row["id"]] = row
    return found
