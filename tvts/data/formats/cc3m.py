"""Conceptual Captions (CC3M) reader: the Frozen-in-Time / TVTS TSV and folder, or img2dataset tars.

Two layouts are accepted:

- **The TVTS / Frozen TSV** `cc3m_train.tsv` / `cc3m_val.tsv`: tab separated, the first
  non-blank line a header whose names are not read (`pandas.read_csv` skips it in the official
  loader), column 0 the caption and column 1 the image's path relative to the split folder
  (`<CC3M>/training` for train, `<CC3M>/validation` for val, passed as `images`); further columns
  are ignored. The id is column 1. CSV quoting is honoured and a UTF-8 byte-order mark stripped.
- **img2dataset WebDataset tars** (`--output_format webdataset`), e.g. `<CC3M>/00000.tar, ...`:
  each sample is `<key>.jpg` (or .jpeg/.png/.webp) with `<key>.txt` (the caption, UTF-8) and
  `<key>.json` (img2dataset's metadata; its `caption` stands in when there is no .txt, and a
  `status` other than "success" leaves the sample out). Members of one sample are consecutive,
  as WebDataset writes them; the id is the key. Pass a list of tars, one tar, or a folder
  (its `*.tar`, sorted); `images` is unused.

Items come out streamed, in file order, the image bytes carried in `data` for tars and the file in
`path` for the TSV. Captions are stripped and cut to MAX_CAPTION_CHARS (350). A TSV row with too
few fields raises FormatError (file:line); every other sample left out is counted in `rejects` by
reason: duplicate_id, empty_caption, outside_root, missing_image, empty_image, image_unreadable
(a truncated or corrupt image: decoded in draft mode), and for tars failed_download (json
status), bad_caption (a .txt that is not UTF-8), bad_json, missing_tar and unreadable_tar (the
rest of a tar that cannot be read on, counted once under the tar's path).
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

from tvts.data.formats.common import FormatError, PairChecks, PairItem, iter_table, official_sample
from tvts.io import Rejects

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def read_cc3m(table_or_tars: Path | list[Path], images: Path | None, rejects: Rejects, *,
              sample: int = 0, probe: bool = True) -> Iterator[PairItem]:
    """Stream CC3M's captioned images from a TSV and its folder, or from img2dataset tars.

    Args:
        table_or_tars: the TSV; or the tars, as a list, one `.tar` or a folder of them.
        images: the folder the TSV's paths are relative to (unused for tars).
        rejects: counts every sample left out, by reason.
        sample: TSV only: keep this many rows as the official loader thins its validation split
            (`DataFrame.sample(n, random_state=0)`, before any file is checked; 0 keeps all).
        probe: decode each image in draft mode (False: existence and size only).

    Yields:
        The usable images (kind "image").

    Raises:
        FormatError: a TSV row with too few fields, naming file and line.
        ValueError: a TSV without an `images` folder.
    """
    checks = PairChecks("image", rejects, probe)
    tars = _tar_list(table_or_tars)
    if tars is not None:
        yield from _from_tars(tars, checks)
        return
    if images is None:
        raise ValueError(f"{table_or_tars}: a CC3M TSV needs the images folder its paths are relative to")
    yield from _from_tsv(Path(table_or_tars), Path(images), checks, sample)


def _tar_list(source: Path | list[Path]) -> list[Path] | None:
    if isinstance(source, (list, tuple)):
        return [Path(p) for p in source]
    source = Path(source)
    if source.is_dir():
        return sorted(source.glob("*.tar"))
    return [source] if source.suffix == ".tar" else None


def _from_tsv(table: Path, images: Path, checks: PairChecks, sample: int) -> Iterator[PairItem]:
    rows = _tsv_rows(table)
    if sample:
        listed = list(rows)
        rows = (listed[i] for i in official_sample(len(listed), sample))
    for caption, rel in rows:
        item = checks.from_file(rel, caption, images / rel, images)
        if item is not None:
            yield item


def _tsv_rows(table: Path) -> Iterator[tuple[str, str]]:
    """(caption, relative path) of each data row; the header dropped."""
    lines = iter_table(table, "\t")
    next(lines, None)
    for line, fields in lines:
        if len(fields) < 2 or not fields[1].strip():
            raise FormatError(table, f"expected '<caption>\\t<image path>', got {len(fields)} field(s)", line)
        yield fields[0], fields[1].strip()


def _from_tars(tars: list[Path], checks: PairChecks) -> Iterator[PairItem]:
    for tar in tars:
        if not tar.is_file():
            checks.rejects.add(str(tar), "missing_tar", str(tar))
            continue
        try:
            for key, members in _tar_samples(tar):
                item = _tar_item(key, members, checks)
                if item is not None:
                    yield item
        except (tarfile.TarError, OSError, EOFError) as err:
            checks.rejects.add(str(tar), "unreadable_tar", f"{tar}: {err}")


def _tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample: consecutive members sharing the name before the first dot.

    Raises:
        tarfile.ReadError: the tar is cut short (tarfile itself takes a cut for the end).
    """
    key, members, size = None, {}, path.stat().st_size
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.offset_data + member.size > size:
                raise tarfile.ReadError(f"{member.name} is cut short")
            if not member.isfile():
                continue
            k, _, ext = member.name.rpartition("/")[2].partition(".")
            if members and k != key:
                yield key, members
                members = {}
            key, members[ext.lower()] = k, tar.extractfile(member).read()
        _check_end(tar)
    if members:
        yield key, members


def _check_end(tar: tarfile.TarFile) -> None:
    # A tar ends in zero blocks; tarfile stops quietly at a header cut in two, so a download
    # that broke off between samples would otherwise look complete.
    tar.fileobj.seek(tar.offset)
    rest = tar.fileobj.read(1 << 16)
    if len(rest) < tarfile.BLOCKSIZE or rest.strip(b"\0"):
        raise tarfile.ReadError(f"no end-of-archive blocks after offset {tar.offset}: the tar is cut short")


def _tar_item(key: str, members: dict[str, bytes], checks: PairChecks) -> PairItem | None:
    try:
        meta = json.loads(members["json"]) if "json" in members else {}
    except ValueError as err:  # invalid JSON or bytes that are no Unicode
        return _reject(checks, key, "bad_json", str(err))
    try:
        caption = members["txt"].decode("utf-8-sig") if "txt" in members else None
    except UnicodeDecodeError as err:
        return _reject(checks, key, "bad_caption", str(err))
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("status", "success") != "success":
        return _reject(checks, key, "failed_download", str(meta.get("error_message") or meta["status"]))
    if caption is None:
        caption = meta.get("caption") if isinstance(meta.get("caption"), str) else ""
    data = next((members[ext] for ext in IMAGE_EXTS if ext in members), None)
    return checks.from_bytes(key, caption, data)


def _reject(checks: PairChecks, key: str, reason: str, detail: str) -> None:
    if key in checks.seen:
        reason, detail = "duplicate_id", f"{key!r} appears again"
    checks.seen.add(key)  # a later sample reusing the key is still a duplicate
    checks.rejects.add(key, reason, detail)
