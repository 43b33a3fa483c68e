"""LSMDC reader: the LSMDC 2016 annotations with the 1000-clip public test set.

Annotations: `<root>/LSMDC16_annos_training.csv` (train) and
`<root>/LSMDC16_challenge_1000_publictect.csv` (test, the 1k clips papers report), no header,
tab separated, six fields per line:
`<clip id>\\t<start aligned>\\t<end aligned>\\t<start extracted>\\t<end extracted>\\t<sentence>`.
A clip id (e.g. `0001_American_Beauty_00.00.51.926-00.00.54.129`) can repeat; all its
sentences are kept, in file order. Videos: `<root>/videos/<movie>/<clip id>.avi`, where
`<movie>` is the clip id without its last `_<times>` part (`0001_American_Beauty`), as the
per-movie archives unpack (`videos=` overrides the folder).
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import (FormatError, VideoItem, VideoSet, keep_existing, read_lines,
                                      videos_dir)

SPLIT_FILES = {"train": "LSMDC16_annos_training.csv", "test": "LSMDC16_challenge_1000_publictect.csv"}
VIDEOS = "videos"
N_FIELDS = 6


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of LSMDC.

    Args:
        root: the folder holding the annotation CSVs and `videos/`.
        split: "train" or "test" (the 1000-clip public test set).
        fold: unused; accepted so every reader has the same call.
        videos: the folder of the movie folders, if not `videos` under root.

    Returns:
        One item per clip (first-appearance order) with its sentences as captions.
    """
    root = Path(root)
    captions = read_annotations(root / SPLIT_FILES[split])
    folder = videos_dir(root, videos, VIDEOS)
    candidates = [VideoItem(clip, folder / movie_of(clip) / f"{clip}.avi", captions=tuple(sentences))
                  for clip, sentences in captions.items()]
    return keep_existing(candidates, "lsmdc", split, folder=folder)


def read_annotations(path: Path) -> dict[str, list[str]]:
    """Group the sentences of an annotation CSV by clip id, in file order.

    Raises:
        FormatError: a line without six tab-separated fields, or with an empty id or sentence.
    """
    captions: dict[str, list[str]] = {}
    for line, text in read_lines(path):
        # maxsplit keeps a stray tab inside a sentence from shifting the fields
        fields = text.split("\t", N_FIELDS - 1)
        if len(fields) != N_FIELDS or not fields[0].strip() or not fields[-1].strip():
            raise FormatError(path, f"expected {N_FIELDS} tab-separated fields ending in a sentence", line)
        captions.setdefault(fields[0].strip(), []).append(fields[-1].strip())
    return captions


def movie_of(clip: str) -> str:
    """The movie folder of a clip id: everything before the last underscore."""
    return clip.rsplit("_", 1)[0]
