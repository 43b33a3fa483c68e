"""The join: fetched videos, their captions (or Whisper's words) and the release's denoised text,
written in the layout `align_asr` reads (tvts.data.formats.yttemporal):

    <root>/<subset>/data/<id>.mp4            a hard link to the store's file (a copy across file systems)
    <root>/<subset>/annotations/<id>.json    {"subtitles": [{word, time}], "denoised": [...], "info": {...}}
    <list>                                   TSV, header `Name`, rows `<subset>/data/<id>.mp4`; <root> is its folder

Release fields read: the id (`id`, `video_id`, `vid` or `_id`), `denoised` (MERLOT's
Grover-denoised sentences, `[{"cleanasr": ...}]`), `title` and `description`. Without a
`denoised` list the transcript stands in for it (Whisper's punctuated text, else the caption
words), counted as `denoised_from_transcript`. Without `title`/`description` YouTube's are used.
A present video without captions or a transcript is left out, counted as `no_transcript`.
"""
from __future__ import annotations

import os
from pathlib import Path

from tvts import io
from tvts.data.fetch.ids import release_fields
from tvts.data.vtt import read_vtt


def _link(src: Path, dst: Path) -> None:
    """Put `src` at `dst` atomically: a hard link (no second copy of the video), else a copy."""
    with io.atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            import shutil

            shutil.copyfile(src, tmp)


def transcript_of(row: dict, transcripts: dict[str, dict]) -> tuple[list, list | None, str] | None:
    """(subtitles, Whisper's denoised or None, source) of a present video, or None."""
    if row["id"] in transcripts:
        t = transcripts[row["id"]]
        return t["subtitles"], t.get("denoised"), "whisper"
    if row.get("captions"):
        return read_vtt(row["captions"]), None, "youtube_captions"
    return None


def annotation(row: dict, release: dict, subtitles: list, whisper_denoised: list | None, source: str) -> tuple[dict, bool]:
    """The MERLOT-format annotation of one video, and whether its denoised text stood in."""
    denoised = release.get("denoised")
    stood_in = not (isinstance(denoised, list) and denoised)
    if stood_in:
        denoised = whisper_denoised or [{"cleanasr": " ".join(w["word"] for w in subtitles)}]
    info = {"id": row["id"], "title": release.get("title") or row.get("title") or "",
            "description": release.get("description") or row.get("description") or "",
            "duration": row["duration"], "sha256": row["sha256"], "transcript": source}
    return {"subtitles": subtitles, "denoised": denoised, "info": info}, stood_in


def join(rows: list[dict], release_source: str | None, transcripts: dict[str, dict], video_list: str | Path,
         subset: str) -> tuple[dict, io.Rejects]:
    """Write the corpus under the list's folder and the list itself (last).

    Args:
        rows: the fetch parts' rows (every id; only `ok` ones are joined).
        release_source: `fetch.ids` (jsonl/jsonl.gz or a list), for the release fields.
        transcripts: Whisper's rows by id (the transcribe parts), preferred over captions.
        video_list: the TSV to write (`data.yttemporal_list`).
        subset: the `<subset>` folder name.
    Returns:
        (counts, rejects).
    """
    root, rejects = Path(video_list).parent, io.Rejects("join_fetched")
    present = [r for r in rows if r["status"] == "ok"]
    release = release_fields(release_source, {r["id"] for r in present}) if release_source else {}
    names, stood_in = [], 0
    for row in present:
        got = transcript_of(row, transcripts)
        if got is None:
            rejects.add(row["id"], "no_transcript", "no captions and no Whisper transcript")
            continue
        ann, filled = annotation(row, release.get(row["id"], {}), *got)
        stood_in += filled
        _link(Path(row["video"]), root / subset / "data" / f"{row['id']}.mp4")
        io.atomic_write_json(root / subset / "annotations" / f"{row['id']}.json", ann)
        names.append(f"{subset}/data/{row['id']}.mp4")
    io.atomic_write_text(video_list, "Name\n" + "".join(f"{n}\n" for n in names))
    counts = {"ids": len(rows), "present": len(present), "joined": len(names),
              "denoised_from_transcript": stood_in, "from_whisper": sum(r["id"] in transcripts for r in present)}
    return counts, rejects
