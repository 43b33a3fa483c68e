"""MSVD reader: the released English descriptions with the standard 1200/100/670 split.

Captions: `<root>/AllVideoDescriptions.txt`, lines `<video id> <caption>` split at the first
space or tab (e.g. `-4wsuPCjDBc_5_15 a squirrel is eating a peanut`); lines starting with `#` (the
file's header) are skipped, and every caption of a video is kept, in file order. Splits:
`<root>/train_list.txt` (train, 1200 videos) and `<root>/test_list.txt` (test, 670 videos), one
video id per line, as distributed with collaborative-experts and CLIP4Clip. Videos:
`<root>/YouTubeClips/<id>.avi` (`videos=` overrides the folder). A listed id without any
caption is an error.
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import (FormatError, VideoSet, listed_retrieval_split, read_lines,
                                      videos_dir)

CAPTIONS = "AllVideoDescriptions.txt"
SPLIT_LISTS = {"train": "train_list.txt", "test": "test_list.txt"}
VIDEOS = "YouTubeClips"


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of MSVD.

    Args:
        root: the folder holding the descriptions, the split lists and `YouTubeClips/`.
        split: "train" or "test".
        fold: unused; accepted so every reader has the same call.
        videos: the videos folder, if not `YouTubeClips` under root.

    Returns:
        The split with all captions per video, the videos not on disk in `missing`.
    """
    root = Path(root)
    captions = read_descriptions(root / CAPTIONS)
    path = root / SPLIT_LISTS[split]
    folder = videos_dir(root, videos, VIDEOS)
    return listed_retrieval_split("msvd", split, path, captions, folder, ".avi")


def read_descriptions(path: Path) -> dict[str, list[str]]:
    """Group the captions of AllVideoDescriptions.txt by video id.

    Raises:
        FormatError: a line with an id but no caption.
    """
    captions: dict[str, list[str]] = {}
    for line, text in read_lines(path):
        if text.startswith("#"):
            continue
        fields = text.split(None, 1)
        if len(fields) != 2:
            raise FormatError(path, f"expected '<video id> <caption>', got {text!r}", line)
        captions.setdefault(fields[0], []).append(fields[1].strip())
    return captions
