"""MSR-VTT reader: the Frozen-in-Time layout with the 9k / 1k-A ("jsfusion") split.

Captions: `<root>/annotation/MSR_VTT.json`, whose `annotations` list holds
`{"image_id": "video123", "caption": "..."}` (other keys ignored); every caption of a video is
kept, in file order. Splits: `<root>/high-quality/structured-symlinks/train_list_jsfusion.txt`
(train, 9k videos) and `val_list_jsfusion.txt` (test, the 1k-A set), one video id per line.
Videos: `<root>/videos/all/<id>.mp4` (`videos=` overrides the folder). This is also the layout
of the demo corpus `data/demo/msrvtt`. A listed id without any caption is an error.
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import (FormatError, VideoSet, listed_retrieval_split, load_json, videos_dir)

CAPTIONS = "annotation/MSR_VTT.json"
SPLIT_LISTS = {"train": "train_list_jsfusion.txt", "test": "val_list_jsfusion.txt"}
LISTS_DIR = "high-quality/structured-symlinks"
VIDEOS = "videos/all"


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of MSR-VTT.

    Args:
        root: the MSRVTT folder (annotation/, high-quality/, videos/).
        split: "train" (9k) or "test" (1k-A).
        fold: unused; accepted so every reader has the same call.
        videos: the videos folder, if not `videos/all` under root.

    Returns:
        The split with all captions per video, the videos not on disk in `missing`.
    """
    root = Path(root)
    captions = read_captions(root / CAPTIONS)
    path = root / LISTS_DIR / SPLIT_LISTS[split]
    folder = videos_dir(root, videos, VIDEOS)
    return listed_retrieval_split("msrvtt", split, path, captions, folder, ".mp4")


def read_captions(path: Path) -> dict[str, list[str]]:
    """Group the captions of MSR_VTT.json by video id, in file order.

    Raises:
        FormatError: no `annotations` list, or an entry (named by its 0-based index) without
            a string `image_id` and `caption`.
    """
    raw = load_json(path)
    entries = raw.get("annotations") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise FormatError(path, "no 'annotations' list at the top level")
    captions: dict[str, list[str]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("image_id"), str) \
                or not isinstance(entry.get("caption"), str):
            raise FormatError(path, f"annotations[{i}] needs string fields 'image_id' and 'caption'")
        captions.setdefault(entry["image_id"], []).append(entry["caption"].strip())
    return captions
