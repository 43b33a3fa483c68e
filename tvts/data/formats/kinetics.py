"""Kinetics-400 reader: the release CSVs and trimmed clips.

Annotations: a CSV with the header `label,youtube_id,time_start,time_end,split` (extra columns
are ignored), at `<root>/annotations/<name>` or `<root>/<name>`. Train reads `train.csv`; test
(the validation set the paper reports) reads `val.csv`, or `validate.csv` as the DeepMind
release names it. Clips are `<youtube_id>_<time_start:06d>_<time_end:06d>.mp4` in
`<root>/train/` and `<root>/val/` (the kinetics-dataset download layout; `videos=` overrides the
folder), either flat or in per-class folders `<split folder>/<label>/<clip>.mp4`, where the
class folder may spell spaces as underscores. Class index = position in the sorted unique labels
of the train CSV, so train and test share it; a test label absent from train is an error.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from tvts.data.formats.common import FormatError, VideoItem, VideoSet, keep_existing, read_text, videos_dir

COLUMNS = ("label", "youtube_id", "time_start", "time_end")
CSV_NAMES = {"train": ("train.csv",), "test": ("val.csv", "validate.csv")}
VIDEO_FOLDERS = {"train": "train", "test": "val"}


@dataclass(frozen=True)
class Row:
    """One annotation row: the clip file name it implies, its label and its CSV line."""

    clip: str
    label: str
    line: int


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of Kinetics-400.

    Args:
        root: the dataset root (annotations/ or the CSVs, and the clip folders).
        split: "train" (train.csv) or "test" (val.csv / validate.csv).
        fold: unused; accepted so every reader has the same call.
        videos: the clip folder of this split, if not `train/` or `val/` under root.

    Returns:
        The split with labels and classes, the clips not on disk in `missing`.
    """
    root = Path(root)
    train_rows = read_csv(find_csv(root, "train"))
    classes = tuple(sorted({row.label for row in train_rows}))
    path = find_csv(root, split)
    rows = train_rows if split == "train" else read_csv(path)
    folder = videos_dir(root, videos, VIDEO_FOLDERS[split])
    index = {name: i for i, name in enumerate(classes)}
    candidates = [_item(row, index, folder, path) for row in rows]
    return keep_existing(candidates, "kinetics400", split, classes, folder=folder)


def find_csv(root: Path, split: str) -> Path:
    """The annotation CSV of a split, under `annotations/` or directly in root."""
    for folder in (root / "annotations", root):
        for name in CSV_NAMES[split]:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"{root}: no {' or '.join(CSV_NAMES[split])} in annotations/ or the root")


def read_csv(path: Path) -> list[Row]:
    """Parse an annotation CSV, one `Row` per data line in file order.

    Raises:
        FormatError: a missing column, an empty label or id, or non-numeric times.
    """
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise FormatError(path, f"header lacks columns {missing} (got {reader.fieldnames})", 1)
    return [_row(row, path, reader.line_num) for row in reader]


def _row(row: dict, path: Path, line: int) -> Row:
    label, youtube_id = (row.get("label") or "").strip(), (row.get("youtube_id") or "").strip()
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except (TypeError, ValueError):
        raise FormatError(path, f"times {row.get('time_start')!r}, {row.get('time_end')!r} "
                                "are not numbers", line) from None
    if not label or not youtube_id:
        raise FormatError(path, "empty label or youtube_id", line)
    return Row(f"{youtube_id}_{start:06d}_{end:06d}.mp4", label, line)


def _item(row: Row, index: dict[str, int], folder: Path, path: Path) -> VideoItem:
    if row.label not in index:
        raise FormatError(path, f"label {row.label!r} is not a class of the train CSV", row.line)
    return VideoItem(Path(row.clip).stem, _clip_path(folder, row.label, row.clip), label=index[row.label])


def _clip_path(folder: Path, label: str, clip: str) -> Path:
    # Both layouts are in use (flat download vs. class folders); the flat path is the one
    # reported as missing when none exists.
    for candidate in (folder / clip, folder / label / clip, folder / label.replace(" ", "_") / clip):
        if candidate.is_file():
            return candidate
    return folder / clip
