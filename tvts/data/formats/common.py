"""What every reader returns, and the text-reading path they all share.

A downstream reader parses the annotation files of one real format (docs/method.md, 'Data
formats') and checks that each listed video exists. A missing video is never dropped silently:
it is left out of `items` and counted in `missing` with its reason, and the evaluation stages
report the count. A pair reader (CC3M, WebVid) returns `PairItem`s and counts what it leaves out
in a `tvts.io.Rejects`, by reason.

Every text file is read through `read_text` or `iter_table`, which strip a UTF-8 byte-order mark
and name the file and line of bytes that are not UTF-8.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from tvts.io import Rejects


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


# ----------------------------------------------------------------------------- caption/media pairs
# Frozen-in-Time cuts WebVid captions at 350 characters; the text encoder keeps far fewer tokens,
# so a longer caption (a scraped page, a run-on alt text) loses nothing it would have used.
MAX_CAPTION_CHARS = 350
VAL_SAMPLE = 1000  # the official loaders keep 1000 rows of a validation table (random_state 0)


@dataclass(frozen=True)
class PairItem:
    """One captioned image or video of a post-pretraining source (CC3M, WebVid).

    Args:
        id: unique within its source (a table's path or video id, a tar's sample key).
        caption: stripped, at most MAX_CAPTION_CHARS characters, never empty.
        kind: "image" or "video".
        path: the media file (empty when `data` holds it).
        data: the media bytes, for samples read out of img2dataset tars.
    """

    id: str
    caption: str
    kind: str
    path: str = ""
    data: bytes = b""


def clean_caption(text: str) -> str:
    """A caption stripped and cut to MAX_CAPTION_CHARS (empty means: reject it)."""
    return text.strip()[:MAX_CAPTION_CHARS].rstrip()


def iter_table(path: str | Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Stream a CSV or TSV as (line, fields), the header included, blank rows skipped.

    CSV quoting is honoured as pandas.read_csv honours it in the official loaders, a UTF-8
    byte-order mark is removed, and a row's line is the one where it ends.

    Raises:
        FormatError: bytes that are not UTF-8 or a row csv cannot parse, naming file and line.
    """
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            for fields in reader:
                if any(s.strip() for s in fields):
                    yield reader.line_num, fields
        except UnicodeDecodeError:
            read_text(path)  # decodes the whole file to name the exact line and byte
            raise
        except csv.Error as err:
            raise FormatError(path, f"unreadable row: {err}", reader.line_num) from None


def official_sample(n_rows: int, n: int, seed: int = 0) -> list[int]:
    """The row positions `pandas.DataFrame.sample(n, random_state=seed)` keeps, in its order.

    The official loaders thin a validation table this way; pandas draws
    `RandomState(seed).choice(n_rows, n, replace=False)`. A table of at most n rows is kept
    whole, in file order (pandas would refuse a larger sample than the table).
    """
    if n_rows <= n:
        return list(range(n_rows))
    return np.random.RandomState(seed).choice(n_rows, size=n, replace=False).tolist()


def check_image(data: bytes) -> tuple[str, str] | None:
    """Why an image's bytes are unusable, as (reason, detail), or None when they decode.

    Decodes in JPEG draft mode (1/8 scale): every byte of the entropy-coded data is still read,
    so a truncated file is caught, at a fraction of a full decode's cost.
    """
    if not data:
        return "empty_image", "0 bytes"
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
        return "image_unreadable", str(err)
    return None


def check_video(path: Path, probe: bool = True) -> tuple[str, str] | None:
    """Why a video file is unusable, as (reason, detail), or None.

    Args:
        probe: also open the container with PyAV and require a video stream (it reads the
            header only); False checks the size alone.
    """
    if path.stat().st_size == 0:
        return "empty_video", f"{path}: 0 bytes"
    if not probe:
        return None
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "video_unreadable", f"{path}: no video stream"
    except Exception as err:  # noqa: BLE001 - av.error.* and OSError for a damaged container
        return "video_unreadable", f"{path}: {err}"
    return None


@dataclass
class PairChecks:
    """Turns the rows of one pair source into `PairItem`s, counting every row it leaves out.

    Reasons: duplicate_id (a later row repeating an id), empty_caption, outside_root (a path
    leaving the media folder), missing_image / missing_video, and those of check_image /
    check_video. One instance per source, so ids are unique within it.

    Args:
        kind: "image" or "video".
        rejects: where left-out rows are counted (item = the row's id).
        probe: decode each image / open each video (False: existence and size only).
    """

    kind: str
    rejects: Rejects
    probe: bool = True
    seen: set[str] = field(default_factory=set)

    def from_file(self, item_id: str, caption: str, path: Path, folder: Path) -> PairItem | None:
        """The item of a row naming a media file under `folder`, or None (counted)."""
        problem = self._row_problem(item_id, caption) or self._file_problem(path, folder)
        return self._keep(item_id, caption, problem, path=str(path))

    def from_bytes(self, item_id: str, caption: str, data: bytes | None) -> PairItem | None:
        """The item of a sample carrying its image bytes (None: the sample has no image)."""
        problem = self._row_problem(item_id, caption)
        if problem is None and data is None:
            problem = "missing_image", "no image member"
        if problem is None and self.probe:
            problem = check_image(data)
        return self._keep(item_id, caption, problem, data=data or b"")

    def _keep(self, item_id: str, caption: str, problem: tuple[str, str] | None, **media) -> PairItem | None:
        if problem is not None:
            self.rejects.add(item_id, *problem)
            return None
        return PairItem(item_id, clean_caption(caption), self.kind, **media)

    def _row_problem(self, item_id: str, caption: str) -> tuple[str, str] | None:
        if item_id in self.seen:
            return "duplicate_id", f"{item_id!r} appears again"
        self.seen.add(item_id)
        if not clean_caption(caption):
            return "empty_caption", ""
        return None

    def _file_problem(self, path: Path, folder: Path) -> tuple[str, str] | None:
        if not inside(path, folder):
            return "outside_root", str(path)
        if not path.is_file():
            return f"missing_{self.kind}", str(path)
        if self.kind == "video":
            return check_video(path, self.probe)
        if not self.probe:
            return ("empty_image", str(path)) if path.stat().st_size == 0 else None
        problem = check_image(path.read_bytes())
        return None if problem is None else (problem[0], f"{path}: {problem[1]}")
