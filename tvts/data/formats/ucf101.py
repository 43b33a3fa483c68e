"""UCF-101 reader: the official three-fold train/test lists.

Annotations in `<root>/ucfTrainTestlist/`: `classInd.txt` with lines `1 ApplyEyeMakeup`
(1-based index, stored 0-based); `trainlist0{1,2,3}.txt` (train) with lines
`ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`; `testlist0{1,2,3}.txt` (test) with the path
only, the class being its folder. `fold` (1, 2 or 3) picks the list pair. Videos:
`<root>/UCF-101/<Class>/<file>.avi` (`videos=` overrides the folder). Class folders are matched
to classInd.txt ignoring case, because the release spells some names two ways (HandStand /
Handstand); a train label that disagrees with the folder is an error.
"""
from __future__ import annotations

from pathlib import Path

from tvts.data.formats.common import FormatError, VideoItem, VideoSet, keep_existing, read_lines, videos_dir

LISTS = "ucfTrainTestlist"
VIDEOS = "UCF-101"
FOLDS = (1, 2, 3)


def read(root: str | Path, split: str, fold: int = 1, *, videos: str | Path | None = None) -> VideoSet:
    """Read one split of one fold of UCF-101.

    Args:
        root: the folder holding `ucfTrainTestlist/` and `UCF-101/`.
        split: "train" (trainlist0<fold>.txt) or "test" (testlist0<fold>.txt).
        fold: 1, 2 or 3.
        videos: the videos folder, if not `UCF-101` under root.

    Returns:
        The split, labelled 0..100, with the videos not on disk in `missing`.

    Raises:
        ValueError: a fold other than 1, 2 or 3.
    """
    if fold not in FOLDS:
        raise ValueError(f"ucf101: fold must be one of {FOLDS}, got {fold!r}")
    root = Path(root)
    classes = read_class_index(root / LISTS / "classInd.txt")
    path = root / LISTS / f"{split}list0{fold}.txt"
    folder = videos_dir(root, videos, VIDEOS)
    index = {name.lower(): i for i, name in enumerate(classes)}
    lengths = (2,) if split == "train" else (1, 2)  # test lists carry no label; tolerate one
    candidates = [_item(text, index, folder, path, line, lengths) for line, text in read_lines(path)]
    return keep_existing(candidates, "ucf101", split, classes, folder=folder)


def read_class_index(path: Path) -> tuple[str, ...]:
    """Parse classInd.txt into class names ordered by their (1-based) index.

    Raises:
        FormatError: a line that is not `<int> <name>`, or indices that are not 1..N.
    """
    numbered = {}
    for line, text in read_lines(path):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise FormatError(path, f"expected '<index> <class>', got {text!r}", line)
        numbered[int(fields[0])] = fields[1]
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise FormatError(path, "class indices are not 1..N without gaps or repeats")
    return tuple(numbered[i] for i in sorted(numbered))


def _item(text: str, index: dict[str, int], folder: Path, path: Path, line: int,
          lengths: tuple[int, ...]) -> VideoItem:
    fields = text.split()
    bad_label = len(fields) == 2 and not fields[1].isdigit()
    if len(fields) not in lengths or fields[0].count("/") != 1 or bad_label:
        form = "'<Class>/<video>.avi <label>'" if lengths == (2,) else "'<Class>/<video>.avi'"
        raise FormatError(path, f"expected {form}, got {text!r}", line)
    class_dir = fields[0].split("/")[0]
    label = index.get(class_dir.lower())
    if label is None:
        raise FormatError(path, f"class folder {class_dir!r} is not in classInd.txt", line)
    if len(fields) == 2 and int(fields[1]) - 1 != label:
        raise FormatError(path, f"label {fields[1]} disagrees with class folder {class_dir!r}", line)
    return VideoItem(Path(fields[0]).stem, folder / fields[0], label=label)
