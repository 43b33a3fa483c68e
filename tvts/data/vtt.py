"""YouTube's word-timed WebVTT captions as MERLOT `subtitles`: `[{"word": str, "time": float}]`.

YouTube's automatic captions come as rolling two-line cues. A cue that adds speech holds the
previous line as plain text, then the new line with an inline time before every word but the
first: `guys<00:00:00.179><c> this</c><00:00:00.359><c> is</c>`; the first word starts at the
cue's own start. Between two such cues sits a ~10 ms cue that only repeats the finished line as
plain text. Each word is kept once, with its own time:

- a line with inline times is always new speech;
- a plain line equal to the last line kept is context (the repeat) and is dropped;
- any other plain line (`[Music]`, or captions without word times) is new: all its words get
  the cue's start.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from tvts.data.formats.common import FormatError, read_text

_TIME = r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})"
_CUE_TIMING = re.compile(rf"^{_TIME}\s+-->\s+{_TIME}")
_INLINE_TIME = re.compile(rf"<{_TIME}>")
_TAG = re.compile(r"</?[^>]*>")


def parse_time(text: str) -> float:
    """`[hh:]mm:ss.mmm` -> seconds.

    Raises:
        ValueError: not a WebVTT timestamp.
    """
    m = re.fullmatch(_TIME, text.strip())
    if not m:
        raise ValueError(f"not a WebVTT timestamp: {text!r}")
    return _seconds(m.groups())


def _seconds(groups) -> float:
    h, m, s, ms = groups
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _cues(text: str, path: str | Path) -> list[tuple[float, list[str]]]:
    """(start seconds, text lines) of every cue, in file order; header and NOTE blocks skipped."""
    # Only a truly empty line ends a cue: YouTube's cues hold lines of one space.
    blocks = re.split(r"\n\n+", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not blocks or not blocks[0].lstrip("\ufeff").startswith("WEBVTT"):
        raise FormatError(path, "not a WebVTT file (no WEBVTT header)")
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        i = next((k for k, ln in enumerate(lines) if "-->" in ln), None)
        if i is None:
            continue  # NOTE, STYLE, REGION or a stray blank-separated line
        m = _CUE_TIMING.match(lines[i].strip())
        if m is None:
            raise FormatError(path, f"bad cue timing {lines[i].strip()!r}")
        cues.append((_seconds(m.groups()[:4]), lines[i + 1:]))
    return cues


def _plain(line: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", line)).split())


def _timed_words(line: str, start: float) -> list[dict]:
    """The words of a line with inline times: text before the first time starts at `start`."""
    words, time, pos = [], start, 0
    for m in _INLINE_TIME.finditer(line):
        words += [{"word": w, "time": round(time, 3)} for w in _plain(line[pos:m.start()]).split()]
        time, pos = _seconds(m.groups()), m.end()
    words += [{"word": w, "time": round(time, 3)} for w in _plain(line[pos:]).split()]
    return words


def parse_vtt(text: str, path: str | Path = "<vtt>") -> list[dict]:
    """Parse YouTube WebVTT captions into MERLOT `subtitles`.

    Args:
        text: the .vtt file's text.
        path: its name, for error messages.
    Returns:
        `[{"word": str, "time": float}]`, each spoken word once, times in seconds (3 decimals).
    Raises:
        FormatError: no WEBVTT header or a malformed cue timing line.
    """
    words: list[dict] = []
    last = None  # the plain text of the last line kept: what a context line repeats
    for start, lines in _cues(text, path):
        for line in lines:
            plain = _plain(line)
            if not plain:
                continue
            timed = _INLINE_TIME.search(line) is not None
            if not timed and plain == last:
                continue
            words += _timed_words(line, start) if timed else [{"word": w, "time": start} for w in plain.split()]
            last = plain
    return words


def read_vtt(path: str | Path) -> list[dict]:
    """`parse_vtt` of a file (strict UTF-8).

    Raises:
        FormatError: naming the file.
    """
    return parse_vtt(read_text(path), path)
