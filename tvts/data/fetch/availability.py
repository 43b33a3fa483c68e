"""The availability snapshot: which of the release's videos a fetch had, and why not the others.

A part's rows (tvts.data.fetch.download) are counted here; the union of all parts is
`availability.json`: `{"version": 1, "counts": {...}, "videos": {id: row}}`. Every listed id is
in it, present with its bytes, duration and sha256, or missing with a reason class. Versioned
with DVC beside the corpus, it says which videos a reproduction trained on, and a second site
can fetch the same ids.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tvts import io
from tvts.data.fetch.download import REASONS

KEPT = ("id", "status", "reason", "detail", "bytes", "duration", "sha256", "format_id", "width", "height",
        "caption_lang", "n_caption_words", "listed")


def counts(rows: list[dict]) -> dict[str, int]:
    """ok / missing totals, every reason class (zeros included, so MLflow curves line up),
    repeats in the id list and the ids a rerun took as already fetched."""
    reasons = Counter(r["reason"] for r in rows if r["status"] != "ok")
    out = {"ids": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
           "missing": sum(r["status"] != "ok" for r in rows),
           "ok_with_captions": sum(r["status"] == "ok" and bool(r.get("caption_lang")) for r in rows),
           "duplicate_listings": sum(max(r.get("listed", 1) - 1, 0) for r in rows),
           "skipped_verified": sum(bool(r.get("skipped")) for r in rows),
           "bytes": sum(r.get("bytes") or 0 for r in rows)}
    return out | {f"missing_{reason}": reasons.get(reason, 0) for reason in REASONS}


def snapshot(part_files: list[str | Path]) -> dict:
    """The union of the parts' rows as `availability.json` content.

    Raises:
        FileNotFoundError: a part file is missing (naming it).
    """
    videos: dict[str, dict] = {}
    for path in part_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"fetch part {path} not found: did its fetch_videos job finish?")
        for row in io.read_jsonl(path):
            videos.setdefault(row["id"], {k: row[k] for k in KEPT if k in row})
    return {"version": 1, "parts": [str(p) for p in part_files], "counts": counts(list(videos.values())),
            "videos": dict(sorted(videos.items()))}
