"""HMDB-51 reader: the official 70/30 three-split files.

Annotations: `<root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`, one per class
and fold, with lines `<video>.avi <0|1|2>` (1 = train, 2 = test, 0 = unused by this fold).
Classes are the class names taken from the file names of the requested fold, sorted, so the
label is the position in that sorted list. Videos: `<root>/videos/<class>/<video>.avi`, i.e.
the per-class folders of the release's archives extracted under `videos/` (`videos=` overrides
that folder, e.g. `videos="."` when the class folders sit directly in root).
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import FormatError, VideoItem, VideoSet, keep_existing, read_lines, videos_dir

SPLITS_DIR = "testTrainMulti_7030_splits"
VIDEOS = "videos"
FOLDS = (1, 2, 3)
MARKS = {"train": "1", "test": "2"}  # "0": the video is in neither split of this fold


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of one fold of HMDB-51.

    Args:
        root: the folder holding `testTrainMulti_7030_splits/` and `videos/`.
        split: "train" (marked 1) or "test" (marked 2).
        fold: 1, 2 or 3 (the `_test_split<fold>.txt` files).
        videos: the folder of the class folders, if not `videos` under root.

    Returns:
        The split, labelled by sorted class name, with the videos not on disk in `missing`.

    Raises:
        ValueError: a fold other than 1, 2 or 3.
    """
    if fold not in FOLDS:
        raise ValueError(f"hmdb51: fold must be one of {FOLDS}, got {fold!r}")
    root = Path(root)
    files = split_files(root / SPLITS_DIR, fold)
    classes = tuple(sorted(files))
    folder = videos_dir(root, videos, VIDEOS)
    candidates = []
    for label, name in enumerate(classes):
        for video in _videos_marked(files[name], MARKS[split]):
            candidates.append(VideoItem(Path(video).stem, folder / name / video, label=label))
    return keep_existing(candidates, "hmdb51", split, classes, folder=folder)


def split_files(folder: Path, fold: int) -> dict[str, Path]:
    """Map each class name to its split file of `fold`.

    Raises:
        FileNotFoundError: the folder holds no split file of that fold.
    """
    suffix = f"_test_split{fold}.txt"
    files = {p.name[: -len(suffix)]: p for p in folder.glob(f"*{suffix}")}
    if not files:
        raise FileNotFoundError(f"{folder}: no *{suffix} files")
    return files


def _videos_marked(path: Path, mark: str) -> list[str]:
    """The videos of one class file whose split mark is `mark`, in file order."""
    chosen = []
    for line, text in read_lines(path):
        fields = text.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise FormatError(path, f"expected '<video>.avi <0|1|2>', got {text!r}", line)
        if fields[1] == mark:
            chosen.append(fields[0])
    return chosen
