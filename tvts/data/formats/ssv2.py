"""Something-Something v2 readers: the official JSON release and the VideoMAE-style list files.

`ssv2` (official release, also the demo corpus `data/demo/ssv2`):
`<root>/something-something-v2-labels.json` maps class name to index as a string
(`{"Approaching something with your camera": "0", ...}`); `<root>/train.json` (train) and
`<root>/validation.json` (test, the split the paper reports) are lists of
`{"id", "label", "template", "placeholders"}`, and the class of an entry is
labels[template with `[` and `]` removed]. Videos: `<root>/20bn-something-something-v2/<id>.webm`
(`videos=` overrides the folder, relative to root or absolute).

`ssv2_list` (VideoMAE lists): `<root>/train.csv` (train) and `<root>/val.csv` (test), or
`train.txt` / `val.txt`, or the official TVTS names `sthv2_{train,val}_list_videos.txt` (the
first that exists; `list_file=` names one), with one `<video> <label>` per line, space
separated, label a 0-based int. `<video>` (e.g. `78687.webm`) is relative to the videos folder,
`<root>/20bn-something-something-v2` unless `videos=` says otherwise; the video id is its stem.
Class names come from `something-something-v2-labels.json` when root has it, else they are
`class_<i>` for i < `num_classes` (default 174, the size of SSV2).
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import (FormatError, VideoItem, VideoSet, keep_existing, load_json,
                                      read_json_list, read_lines, videos_dir)

LABELS_FILE = "something-something-v2-labels.json"
SPLIT_FILES = {"train": "train.json", "test": "validation.json"}
# The split's list: the first of these that exists (VideoMAE's names, then the official TVTS ones).
LIST_FILES = {"train": ("train.csv", "train.txt", "sthv2_train_list_videos.txt"),
              "test": ("val.csv", "val.txt", "sthv2_val_list_videos.txt")}
VIDEOS = "20bn-something-something-v2"
NUM_CLASSES = 174


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of the official SSV2 release.

    Args:
        root: the folder holding the labels JSON and the split JSONs.
        split: "train" (train.json) or "test" (validation.json).
        fold: unused (SSV2 has one split); accepted so every reader has the same call.
        videos: the videos folder, if not `20bn-something-something-v2` under root.

    Returns:
        The split, labelled by template, with the videos not on disk in `missing`.
    """
    root = Path(root)
    classes, index = read_labels(root / LABELS_FILE)
    path, folder = root / SPLIT_FILES[split], videos_dir(root, videos, VIDEOS)
    candidates = [_json_item(entry, index, folder, path, line) for line, entry in read_json_list(path)]
    return keep_existing(candidates, "ssv2", split, classes, folder=folder)


def read_labels(path: Path) -> tuple[tuple[str, ...], dict[str, int]]:
    """Parse the labels JSON into class names ordered by index and the name -> index map.

    Raises:
        FormatError: a value that is not an integer string, or indices that are not 0..N-1.
    """
    raw = load_json(path)
    if not isinstance(raw, dict):
        raise FormatError(path, "top level is not an object of class name -> index")
    index = {}
    for name, value in raw.items():
        if not str(value).isdigit():
            raise FormatError(path, f"class {name!r} has index {value!r}, not an integer string")
        index[name] = int(value)
    if sorted(index.values()) != list(range(len(index))):
        raise FormatError(path, "class indices are not 0..N-1 without gaps or repeats")
    return tuple(sorted(index, key=index.get)), index


def _json_item(entry: object, index: dict[str, int], folder: Path, path: Path, line: int) -> VideoItem:
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) \
            or not isinstance(entry.get("template"), str):
        raise FormatError(path, "entry needs string fields 'id' and 'template'", line)
    name = entry["template"].replace("[", "").replace("]", "")
    if name not in index:
        raise FormatError(path, f"template {entry['template']!r} names no class of {LABELS_FILE}", line)
    return VideoItem(entry["id"], folder / f"{entry['id']}.webm", label=index[name])


def read_list(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None,
              num_classes: int = NUM_CLASSES, list_file: str | Path | None = None) -> VideoSet:
    """Read one split of the VideoMAE-style list files.

    Args:
        root: the folder holding train.csv / val.csv (or .txt).
        split: "train" (train.csv) or "test" (val.csv).
        fold: unused; accepted so every reader has the same call.
        videos: the folder the listed video paths are relative to.
        num_classes: number of classes when there is no labels JSON to name them.
        list_file: this split's list (relative to `root`, or absolute) instead of LIST_FILES.

    Returns:
        The split, with the videos not on disk in `missing`.
    """
    root = Path(root)
    labels_json = root / LABELS_FILE
    classes = read_labels(labels_json)[0] if labels_json.is_file() \
        else tuple(f"class_{i}" for i in range(num_classes))
    path = root / list_file if list_file is not None else _list_file(root, LIST_FILES[split])
    folder = videos_dir(root, videos, VIDEOS)
    candidates = [_list_item(text, len(classes), folder, path, line) for line, text in read_lines(path)]
    return keep_existing(candidates, "ssv2_list", split, classes, folder=folder)


def _list_file(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FormatError(root, f"no list file: looked for {', '.join(names)} (or set eval.datasets.<name>.lists)")


def _list_item(text: str, n_classes: int, folder: Path, path: Path, line: int) -> VideoItem:
    fields = text.split()
    if len(fields) != 2 or not fields[1].isdigit():
        raise FormatError(path, f"expected '<video> <label>', got {text!r}", line)
    label = int(fields[1])
    if label >= n_classes:
        raise FormatError(path, f"label {label} is not below the {n_classes} classes", line)
    return VideoItem(Path(fields[0]).stem, folder / fields[0], label=label)
