"""WebVid-2M reader: a caption table and the folder of its mp4 clips, as Frozen-in-Time and TVTS hold them.

Two table layouts are accepted; the first non-blank line of either is a header, as
`pandas.read_csv` reads it in the official loaders:

- **The TVTS / Frozen TSV** `webvid_train.tsv` / `webvid_val.tsv`: tab separated, column 0 the
  caption, column 1 the clip's path relative to the split folder, without `.mp4` (e.g.
  `000001_000050/1066674784`; a trailing `.mp4` is dropped); further columns are ignored and
  the header's names are not read. `videos` is the split folder (`<WebVid>/train` or
  `<WebVid>/val`: the official loader opens `<data_dir>/<split>/<column 1>.mp4`). The id is
  column 1.
- **The release CSV** `results_2M_train.csv` / `results_2M_val.csv`: comma separated with a
  header holding `videoid`, `page_dir` and `name` (the release's
  `videoid,contentUrl,duration,page_dir,name`; order free, others ignored). The clip is
  `<videos>/<page_dir>/<videoid>.mp4` with `videos` = `<WebVid>/videos`, the caption `name`,
  the id `videoid`.

The layout is told from the header: the release CSV when it names those three columns. Both
honour CSV quoting and strip a UTF-8 byte-order mark. Captions are stripped and cut to
MAX_CAPTION_CHARS (350, Frozen's cut for WebVid). A row with too few fields raises FormatError
(file:line); every other row left out is counted in `rejects` by reason: duplicate_id,
empty_caption, outside_root, missing_video, empty_video (0 bytes), video_unreadable (PyAV
cannot open it, or it has no video stream).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tvts.data.formats.common import FormatError, PairChecks, PairItem, iter_table, official_sample
from tvts.io import Rejects

RELEASE_COLUMNS = ("videoid", "page_dir", "name")


@dataclass(frozen=True)
class Row:
    """One table row: the clip's id, caption and path relative to the videos folder."""

    id: str
    caption: str
    rel: str


def read_webvid(table: Path, videos: Path, rejects: Rejects, *, sample: int = 0,
                probe: bool = True) -> list[PairItem]:
    """Read a WebVid table into captioned clips, in table order.

    Args:
        table: a TVTS/Frozen TSV or a release CSV (see the module docstring).
        videos: the folder the table's paths are relative to.
        rejects: counts every row left out, by reason.
        sample: keep only this many rows, drawn as the official loader draws its validation
            split (`DataFrame.sample(n, random_state=0)`, before any file is checked; 0 keeps
            all). VAL_SAMPLE is the official 1000.
        probe: open each clip with PyAV (False: existence and size only, for a caller that
            decodes every clip anyway).

    Returns:
        The usable clips (kind "video", `path` set).

    Raises:
        FormatError: a header or row the layout cannot read, naming file and line.
    """
    table, videos = Path(table), Path(videos)
    rows = read_rows(table)
    if sample:
        rows = [rows[i] for i in official_sample(len(rows), sample)]
    checks = PairChecks("video", rejects, probe)
    items = (checks.from_file(r.id, r.caption, videos / f"{r.rel}.mp4", videos) for r in rows)
    return [item for item in items if item is not None]


def read_rows(table: Path) -> list[Row]:
    """The data rows of either layout, the header checked and dropped."""
    tsv = _is_tsv(table)
    lines = iter_table(table, "\t" if tsv else ",")
    header = next(lines, None)
    if header is None:
        return []
    if tsv:
        return [_tsv_row(fields, table, line) for line, fields in lines]
    cols = {name.strip(): i for i, name in enumerate(header[1])}
    if missing := [c for c in RELEASE_COLUMNS if c not in cols]:
        raise FormatError(table, f"header lacks columns {missing} (got {header[1]})", header[0])
    return [_csv_row(fields, cols, len(header[1]), table, line) for line, fields in lines]


def _is_tsv(table: Path) -> bool:
    # The release CSV's header names its columns; the TSV's is whatever pandas wrote.
    first = next(iter_table(table, ","), (0, []))[1]
    return not set(RELEASE_COLUMNS) <= {name.strip() for name in first}


def _tsv_row(fields: list[str], table: Path, line: int) -> Row:
    if len(fields) < 2 or not fields[1].strip():
        raise FormatError(table, f"expected '<caption>\\t<path without .mp4>', got {len(fields)} field(s)", line)
    rel = fields[1].strip().removesuffix(".mp4")
    return Row(rel, fields[0], rel)


def _csv_row(fields: list[str], cols: dict[str, int], width: int, table: Path, line: int) -> Row:
    if len(fields) < width:
        raise FormatError(table, f"expected {width} comma-separated fields, got {len(fields)}", line)
    videoid, page_dir = fields[cols["videoid"]].strip(), fields[cols["page_dir"]].strip()
    if not videoid or not page_dir:
        raise FormatError(table, "empty videoid or page_dir", line)
    return Row(videoid, fields[cols["name"]], f"{page_dir}/{videoid}")
