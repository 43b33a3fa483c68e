"""What every downstream dataset reader returns: a split's items, its classes, and what is missing.

A reader parses the annotation files of one real format (PAPER.md, 'Data formats') and checks
that each listed video exists. A missing video is never dropped silently: it is left out of
`items` and counted in `missing` with its reason, and the evaluation stages report the count.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class FormatError(ValueError):
    """A malformed annotation file: the message names the file and, where known, the line."""

    def __init__(self, path: str | Path, msg: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {msg}")


@dataclass(frozen=True)
class VideoItem:
    """One video of a split.

    Args:
        video_id: the dataset's id of the video (e.g. SSV2 "78687", MSR-VTT "video7010").
        path: the video file.
        label: class index for classification sets (-1 for retrieval sets).
        captions: the captions of a retrieval set's video (empty for classification sets).
    """

    video_id: str
    path: Path
    label: int = -1
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Missing:
    video_id: str
    path: Path
    reason: str  # "missing_video" | "video_unreadable" | ...


@dataclass
class VideoSet:
    """One split of one dataset, as read from its annotation files.

    Args:
        dataset: reader name, e.g. "ssv2".
        split: "train" or "test" (the dataset's own name for it is in the reader's docstring).
        items: videos that exist, in annotation order.
        classes: class names indexed by label (empty for retrieval sets).
        missing: listed videos that were left out, with the reason.
    """

    dataset: str
    split: str
    items: list[VideoItem]
    classes: tuple[str, ...] = ()
    missing: list[Missing] = field(default_factory=list)

    def missing_counts(self) -> dict[str, int]:
        return dict(Counter(m.reason for m in self.missing))


def keep_existing(candidates: list[VideoItem], dataset: str, split: str,
                  classes: tuple[str, ...] = ()) -> VideoSet:
    """Split listed items into those whose file exists and the missing ones (counted)."""
    items, missing = [], []
    for item in candidates:
        if item.path.is_file():
            items.append(item)
        else:
            missing.append(Missing(item.video_id, item.path, "missing_video"))
    return VideoSet(dataset, split, items, classes, missing)
