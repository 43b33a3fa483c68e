"""What every downstream dataset reader returns: a split's items, its classes, and what is missing.

A reader parses the annotation files of one real format (docs/method.md, 'Data formats') and checks
that each listed video exists. A missing video is never dropped silently: it is left out of
`items` and counted in `missing` with its reason, and the evaluation stages report the count.
"""
from __future__ import annotations

import io
import json
import os
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
    reason: str  # "missing_video" | "outside_root" | "video_unreadable" | ...


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
                  classes: tuple[str, ...] = (), folder: Path | None = None) -> VideoSet:
    """Split listed items into those whose file exists and the missing ones (counted).

    Args:
        folder: the videos folder; an item whose path leaves it (an absolute name, or `..`
            in an annotation file) is missing as `outside_root`, never read.
    """
    items, missing = [], []
    for item in candidates:
        if folder is not None and not inside(item.path, folder):
            missing.append(Missing(item.video_id, item.path, "outside_root"))
        elif item.path.is_file():
            items.append(item)
        else:
            missing.append(Missing(item.video_id, item.path, "missing_video"))
    return VideoSet(dataset, split, items, classes, missing)


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` lies under `folder`, lexically: symlinks inside a dataset are its own."""
    path_n, folder_n = os.path.normpath(path), os.path.normpath(folder)
    try:
        return os.path.commonpath([path_n, folder_n]) == folder_n and path_n != folder_n
    except ValueError:  # one absolute, one relative
        return False


# ----------------------------------------------------------------------------- reader helpers
SPLITS = ("train", "test")


def read_text(path: str | Path) -> str:
    """A text file decoded as UTF-8 (a byte-order mark removed).

    Raises:
        FormatError: naming the file, the line and the byte when it is not UTF-8 (Python's
            own error names neither the file nor the line).
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        byte = data[err.start:err.start + 1].hex()
        raise FormatError(path, f"not UTF-8 (byte 0x{byte} at offset {err.start}: {err.reason})", line) from None


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """Read a text annotation file as (1-based line number, stripped line), blank lines skipped.

    Args:
        path: the file; CRLF endings and trailing spaces (as in the UCF/HMDB lists) are removed,
            and so is a UTF-8 byte-order mark (every reader here decodes with utf-8-sig).

    Returns:
        The non-blank lines with their line numbers, so errors can name the line.
    """
    lines = io.StringIO(read_text(path), newline=None)  # universal newlines, as open() reads them
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def load_json(path: str | Path) -> object:
    """Parse a JSON file; a syntax error becomes a FormatError naming the file and line."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FormatError(path, f"invalid JSON: {err.msg}", err.lineno) from err


def read_json_list(path: str | Path) -> list[tuple[int, object]]:
    """Parse a JSON file whose top level is a list, keeping the line where each entry starts.

    The entries are decoded one by one (rather than with one `json.load`) only so that an
    error about an entry can name its line, as it can for text formats.

    Args:
        path: the file, e.g. SSV2 `train.json`.

    Returns:
        (1-based line, entry) for every element of the top-level list, in order.
    """
    text = read_text(path)
    decoder, lines = json.JSONDecoder(), _LineCounter(text)
    pos = _skip_space(text, 0)
    if not text.startswith("[", pos):
        raise FormatError(path, "top level is not a JSON list", lines.at(pos))
    pos, entries = _skip_space(text, pos + 1), []
    while not text.startswith("]", pos):
        try:
            entry, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise FormatError(path, f"invalid JSON: {err.msg}", err.lineno) from err
        entries.append((lines.at(pos), entry))
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif not text.startswith("]", pos):
            raise FormatError(path, "invalid JSON: expected ',' or ']'", lines.at(pos))
    return entries


class _LineCounter:
    """Line number of increasing offsets in one text, counting each newline once (not quadratic)."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def videos_dir(root: Path, videos: str | Path | None, default: str) -> Path:
    """The folder holding a dataset's videos: `default` under root unless the caller overrides it.

    Args:
        root: the dataset root.
        videos: override, relative to root or absolute (None keeps the default).
        default: the folder of the official layout, relative to root.
    """
    return root / (default if videos is None else videos)


def read_id_list(path: Path) -> list[tuple[int, str]]:
    """Parse a split list with one video id per line into (line, id).

    Raises:
        FormatError: a line holding more than one token.
    """
    ids = read_lines(path)
    for line, text in ids:
        if len(text.split()) != 1:
            raise FormatError(path, f"expected one video id per line, got {text!r}", line)
    return ids


def retrieval_item(video_id: str, captions: dict[str, list[str]], video: Path,
                   path: Path, line: int | None) -> VideoItem:
    """The item of a listed retrieval video.

    Raises:
        FormatError: the video has no caption (naming the split file and line).
    """
    if not captions.get(video_id):
        raise FormatError(path, f"video {video_id!r} has no caption", line)
    return VideoItem(video_id, video, captions=tuple(captions[video_id]))


def listed_retrieval_split(dataset: str, split: str, list_path: Path, captions: dict[str, list[str]],
                           folder: Path, suffix: str) -> VideoSet:
    """A retrieval split given as a list of video ids (one per line) and a caption table.

    Args:
        list_path: the split list; its line numbers name a listed id without captions.
        folder, suffix: video `<id>` lives at `folder / (<id> + suffix)`.
    """
    candidates = [retrieval_item(video_id, captions, folder / f"{video_id}{suffix}", list_path, line)
                  for line, video_id in read_id_list(list_path)]
    return keep_existing(candidates, dataset, split, folder=folder)
