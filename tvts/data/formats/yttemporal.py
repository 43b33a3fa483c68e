"""YT-Temporal (MERLOT release) reader: the tab-separated video list and per-video JSON.

Layout: `<root>/<subset>/data/<id>.mp4` with `<root>/<subset>/annotations/<id>.json`, listed
by a TSV whose `Name` column holds `<subset>/data/<id>.mp4`.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tvts.data.formats.common import FormatError, read_text
from tvts.io import RejectError


@dataclass(frozen=True)
class VideoEntry:
    """One row of the video list."""

    video_id: str
    name: str  # as in the list, relative to the corpus root
    invalid: str = ""  # why the row cannot be read (a non-UTF-8 row: `invalid_utf8`, file:line), else ""

    def inside_root(self) -> bool:
        """True when the name stays under the corpus root: relative, and no `..` part.

        Lexical on purpose: a root that is (or holds) a symlink, as a DVC cache can make it,
        is still the root.
        """
        name = PurePosixPath(self.name)
        return not name.is_absolute() and ".." not in name.parts

    def video_path(self, root: Path) -> Path:
        return root / self.name

    def annotation_path(self, root: Path) -> Path:
        subset, _, rest = self.name.partition("/data/")
        return root / subset / "annotations" / (Path(rest).stem + ".json")


@dataclass(frozen=True)
class Annotation:
    """The fields of a MERLOT JSON that alignment needs."""

    video_id: str
    subtitles: list
    denoised: list
    duration: float
    info: dict


def read_video_list(path: str | Path) -> list[VideoEntry]:
    """Read the tab-separated list; one `VideoEntry` per row, in file order.

    A row that is not UTF-8 is one bad row among millions: it becomes an entry whose `invalid`
    says so (file:line and the byte), which alignment rejects as `invalid_utf8`.

    Raises:
        ValueError: naming the file (and line) when the header is not UTF-8 or has no `Name`
            column, or a row has an empty or malformed name.
    """
    try:
        text = read_text(path)
    except FormatError:  # bad bytes kept as lone surrogates, so only their rows are refused
        text = Path(path).read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
    if reader.fieldnames is None or "Name" not in reader.fieldnames or _undecodable(reader.fieldnames):
        raise ValueError(f"{path}: no 'Name' column in the UTF-8 header (got {reader.fieldnames})")
    return [_invalid(row, path, reader.line_num) or _entry(row.get("Name"), path, reader.line_num) for row in reader]


def _undecodable(values) -> str:
    """The first value holding a byte that was not UTF-8 (a lone surrogate), or ""."""
    return next((v for v in values if isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v)), "")


def _invalid(row: dict, path: str | Path, line: int) -> VideoEntry | None:
    bad = _undecodable(row.values())
    if not bad:
        return None
    byte = next(c for c in bad if "\udc80" <= c <= "\udcff")
    where = f"{path}:{line}"
    return VideoEntry(video_id=where, name=bad.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                      invalid=f"{where}: not UTF-8 (byte 0x{ord(byte) - 0xdc00:02x})")


def _entry(name: str | None, path: str | Path, line: int) -> VideoEntry:
    name = (name or "").strip()
    if "/data/" not in name or not name.endswith(".mp4"):
        raise ValueError(f"{path}:{line}: Name {name!r} is not of the form <subset>/data/<id>.mp4")
    return VideoEntry(video_id=Path(name).stem, name=name)


def load_annotation(entry: VideoEntry, root: Path) -> Annotation:
    """Load and check one annotation JSON.

    Raises:
        RejectError: missing_annotation, invalid_utf8, unreadable_annotation, bad_annotation,
            zero_duration.
    """
    path = entry.annotation_path(root)
    if not path.exists():
        raise RejectError("missing_annotation", str(path))
    try:
        # Strict decoding: replacing bad bytes would pass mis-encoded words on as text.
        raw = json.loads(read_text(path))
    except FormatError as err:
        raise RejectError("invalid_utf8", str(err)) from err
    except (json.JSONDecodeError, OSError) as err:
        raise RejectError("unreadable_annotation", f"{path}: {err}") from err
    if not isinstance(raw, dict):
        raise RejectError("bad_annotation", f"{path}: top level is not an object")
    return _check_annotation(entry, raw, path)


def _check_annotation(entry: VideoEntry, raw: dict, path: Path) -> Annotation:
    subtitles, denoised, info = raw.get("subtitles"), raw.get("denoised"), raw.get("info")
    if not isinstance(subtitles, list) or not isinstance(denoised, list) or not isinstance(info, dict):
        raise RejectError("bad_annotation", f"{path}: needs lists 'subtitles', 'denoised' and object 'info'")
    duration = info.get("duration")
    if not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration <= 0:
        raise RejectError("zero_duration", f"{path}: info.duration={duration!r}")
    return Annotation(video_id=entry.video_id, subtitles=subtitles, denoised=denoised,
                      duration=float(duration), info=info)
