"""DiDeMo reader for paragraph-to-video retrieval (the CLIP4Clip / Frozen-in-Time protocol).

Annotations: the LocalizingMoments release files `<root>/train_data.json` (train) and
`<root>/test_data.json` (test), each a list of moment entries
`{"video": "<name>.<ext>", "description": "...", "times": [...], ...}`; only `video` and
`description` are read. All descriptions of one video, in file order, are joined with spaces
into one paragraph, its single caption. Videos: `<root>/videos/<video>` as named in the JSON,
or `<root>/videos/<stem>.mp4` when only an mp4 re-encoding is there (`videos=` overrides the
folder). The video id is the `video` field.
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import (FormatError, VideoItem, VideoSet, keep_existing, read_json_list,
                                      videos_dir)

SPLIT_FILES = {"train": "train_data.json", "test": "test_data.json"}
VIDEOS = "videos"


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of DiDeMo as paragraph/video pairs.

    Args:
        root: the folder holding train_data.json / test_data.json and `videos/`.
        split: "train" or "test".
        fold: unused; accepted so every reader has the same call.
        videos: the videos folder, if not `videos` under root.

    Returns:
        One item per video (first-appearance order) with its paragraph as the one caption.
    """
    root = Path(root)
    paragraphs = read_paragraphs(root / SPLIT_FILES[split])
    folder = videos_dir(root, videos, VIDEOS)
    candidates = [VideoItem(name, _video_path(folder, name), captions=(text,))
                  for name, text in paragraphs.items()]
    return keep_existing(candidates, "didemo", split, folder=folder)


def read_paragraphs(path: Path) -> dict[str, str]:
    """Join the moment descriptions of each video into a paragraph, in file order.

    Raises:
        FormatError: an entry without a string `video` and `description` (naming its line),
            or a video whose descriptions are all empty.
    """
    sentences: dict[str, list[str]] = {}
    for line, entry in read_json_list(path):
        if not isinstance(entry, dict) or not isinstance(entry.get("video"), str) \
                or not entry["video"].strip() or not isinstance(entry.get("description"), str):
            raise FormatError(path, "entry needs string fields 'video' and 'description'", line)
        sentences.setdefault(entry["video"].strip(), []).append(entry["description"].strip())
    paragraphs = {video: " ".join(s for s in parts if s) for video, parts in sentences.items()}
    empty = [video for video, text in paragraphs.items() if not text]
    if empty:
        raise FormatError(path, f"videos with only empty descriptions: {empty[:5]}")
    return paragraphs


def _video_path(folder: Path, name: str) -> Path:
    # The release keeps each Flickr file's own extension (.mov, .avi, .m4v, ...); many copies
    # in circulation are re-encoded to mp4, so accept that before reporting the video missing.
    original = folder / name
    mp4 = original.with_suffix(".mp4")
    return mp4 if not original.is_file() and mp4.is_file() else original
