"""One video and its captions through yt-dlp, used as a library; every id ends as a manifest row.

Per id: the video's metadata (YouTube, or an info JSON from `fetch.info_url`) is read with
`extract_info(process=False)`; its English automatic captions are picked (no word-timed
track: `no_captions`); then `process_ie_result(download=True)` runs yt-dlp's own format
selection (`pick_format`), HTTP downloader (retries with backoff, rate limit, socket timeout,
resume of a `.part` file) and caption download into `<store>/.staging/<id>/`. The files are
checked (the container's duration, the captions parse), moved into `<store>/videos` and
`<store>/captions`, and a record with their sizes and sha256 is written last. A rerun takes a
recorded video whose files still match as done; anything else is fetched again, so a killed
part resumes where it stopped. A failure is a row with a reason class (`REASONS`), never an
exception: one bad video never stops a part.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from tvts import io
from tvts.data.fetch.config import FetchConfig, cookies_of, proxy_of
from tvts.data.formats.common import FormatError
from tvts.data.video import probe_duration
from tvts.data.vtt import read_vtt

log = logging.getLogger("tvts.fetch")

REASONS = ("removed_or_private", "geo_blocked", "bot_check_403", "no_captions", "timeout", "other")
WATCH_URL = "https://www.youtube.com/watch?v={id}"

# yt-dlp reports failures as text (its exceptions carry the cause only sometimes), so the class
# is read from the messages of the attempt, most specific first. The phrases are YouTube's and
# yt-dlp's own ("Video unavailable. This video is private", "Sign in to confirm you're not a bot",
# "The uploader has not made this video available in your country", "HTTP Error 403: Forbidden",
# "Read timed out").
_PATTERNS = (
    ("bot_check_403", r"not a bot|confirm you.re not|HTTP Error 403|HTTP Error 429|Too Many Requests|Sign in to confirm"),
    ("geo_blocked", r"in your country|geo.?restrict|not available from your location"),
    ("removed_or_private", r"Private video|This video is private|Video unavailable|has been removed|"
                           r"account .* terminated|no longer available|does not exist|HTTP Error 404|"
                           r"HTTP Error 410|no info JSON"),
    ("timeout", r"timed out|timeout"),
)
_USERINFO = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")


def classify(text: str) -> str:
    """The reason class of a failure from yt-dlp's messages (`other` when none matches)."""
    for reason, pattern in _PATTERNS:
        if re.search(pattern, text, re.IGNORECASE):
            return reason
    return "other"


class Redactor:
    """Removes credentials from every text that may be logged or written: the proxy URL's
    user:password, and any other `scheme://user:pass@` in yt-dlp's messages."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _USERINFO.sub("***@", text)


class CapturingLogger:
    """yt-dlp's `logger`: keeps the current video's warnings and errors (to classify a failure)
    and passes them on to our log, redacted."""

    def __init__(self, redact: Redactor):
        self.redact, self.messages = redact, []

    def debug(self, msg: str) -> None:
        if msg.startswith("[debug] "):
            return
        log.debug("%s", self.redact(msg))

    def info(self, msg: str) -> None:
        log.debug("%s", self.redact(msg))

    def warning(self, msg: str) -> None:
        self.messages.append(self.redact(msg))
        log.warning("%s", self.messages[-1])

    def error(self, msg: str) -> None:
        self.messages.append(self.redact(msg))
        log.warning("%s", self.messages[-1])


def short_side(fmt: dict) -> int | None:
    w, h = fmt.get("width"), fmt.get("height")
    if w and h:
        return min(int(w), int(h))
    return int(h) if h else None


def pick_format(formats: list[dict], cfg: FetchConfig) -> dict | None:
    """The smallest video format whose short side reaches `min_short_side`, H.264 in mp4 first.

    Formats with sound come first when `with_audio` and there are any. When no format is large
    enough, the largest there is (shard_clips scales it up; the row records its short side).
    """
    video = [f for f in formats if f.get("vcodec") != "none" and short_side(f)]
    if cfg.with_audio and any(f.get("acodec") not in (None, "none") for f in video):
        video = [f for f in video if f.get("acodec") not in (None, "none")]
    if not video:
        return None
    big = [f for f in video if short_side(f) >= cfg.min_short_side]

    def preference(f: dict) -> tuple:
        h264_mp4 = str(f.get("vcodec") or "").startswith(cfg.codec) and f.get("ext") == "mp4"
        one_file = f.get("protocol", "https") in ("http", "https")  # not HLS/DASH pieces
        size = f.get("filesize") or f.get("filesize_approx") or (f.get("tbr") or 0) * 1000
        return (not h264_mp4, not one_file, short_side(f), size)

    return min(big, key=preference) if big else max(video, key=lambda f: (short_side(f), not preference(f)[0]))


def pick_captions(info: dict, langs: Iterable[str]) -> str | None:
    """The first of `langs` among the video's automatic (word-timed) caption tracks with a vtt."""
    tracks = info.get("automatic_captions") or {}
    for lang in langs:
        if any(t.get("ext") == "vtt" for t in tracks.get(lang) or ()):
            return lang
    return None


def backoff(cfg: FetchConfig) -> Callable[[int], float]:
    return lambda n: min(cfg.backoff_s * 2 ** n, cfg.max_backoff_s)


def ydl_params(cfg: FetchConfig, staging: Path, logger: CapturingLogger, env=os.environ) -> dict[str, Any]:
    """yt-dlp's options for one part: throttling, retries, timeouts, cookies and proxy."""
    sleep = backoff(cfg)
    params = {
        "outtmpl": {"default": str(staging / "%(id)s" / "%(id)s.%(ext)s")},
        "format": lambda ctx: [f for f in [pick_format(ctx["formats"], cfg)] if f],
        "writeautomaticsub": True, "writesubtitles": False, "subtitlesformat": "vtt",
        "retries": cfg.retries, "fragment_retries": cfg.retries, "extractor_retries": cfg.retries,
        "file_access_retries": 3,
        "retry_sleep_functions": {"http": sleep, "fragment": sleep, "extractor": sleep},
        "socket_timeout": cfg.socket_timeout_s, "continuedl": True, "overwrites": False,
        "sleep_interval_requests": cfg.sleep_requests_s or None,
        "logger": logger, "quiet": True, "no_warnings": False, "noprogress": True,
        "ignoreerrors": False, "noplaylist": True, "color": {"stdout": "no_color", "stderr": "no_color"},
    }
    if cfg.sleep_s or cfg.max_sleep_s:
        params |= {"sleep_interval": cfg.sleep_s, "max_sleep_interval": max(cfg.sleep_s, cfg.max_sleep_s)}
    if cfg.rate_limit:
        params["ratelimit"] = cfg.rate_limit
    if cookies_of(cfg, env):
        params["cookiefile"] = cookies_of(cfg, env)
    if proxy_of(cfg, env):
        params["proxy"] = proxy_of(cfg, env)
    return params


class Store:
    """`<store>/videos/<id>.mp4`, `captions/<id>.vtt`, `records/<id>.json`, `.staging/<id>/`."""

    def __init__(self, root: str | Path, verify: str = "sha256"):
        self.root = Path(root)
        self.staging = self.root / ".staging"
        self.verify = verify

    def video(self, vid: str) -> Path:
        return self.root / "videos" / f"{vid}.mp4"

    def captions(self, vid: str) -> Path:
        return self.root / "captions" / f"{vid}.vtt"

    def record(self, vid: str) -> Path:
        return self.root / "records" / f"{vid}.json"

    def verified(self, vid: str) -> dict | None:
        """The recorded row of `vid` when its files are still there and match the record: their
        sha256 (`verify: sha256`), or their size (`verify: size`, no file read)."""
        try:
            row = json.loads(self.record(vid).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        files = [(self.video(vid), row.get("sha256"), row.get("bytes"))]
        if row.get("captions"):
            files.append((self.captions(vid), row.get("captions_sha256"), row.get("captions_bytes")))
        for path, digest, size in files:
            same = path.is_file() and (path.stat().st_size == size if self.verify == "size" else io.file_sha256(path) == digest)
            if not same:
                log.warning("%s: %s changed since it was fetched; fetching again", vid, path.name)
                return None
        return row


def read_info(ydl, vid: str, cfg: FetchConfig) -> dict:
    """The video's unprocessed metadata: YouTube's, or the info JSON of `fetch.info_url`.

    Raises:
        yt_dlp.utils.DownloadError or OSError: the metadata could not be had (classified by the caller).
    """
    if not cfg.info_url:
        return ydl.extract_info(WATCH_URL.format(id=vid), download=False, process=False)
    where = cfg.info_url.format(id=vid)
    if where.startswith(("http://", "https://")):
        with ydl.urlopen(where) as response:  # yt-dlp's networking: its proxy, cookies and timeout
            return json.loads(response.read())
    path = Path(where)
    if not path.is_file():
        raise FileNotFoundError(f"no info JSON {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def fetch_one(ydl, vid: str, cfg: FetchConfig, store: Store, logger: CapturingLogger) -> dict:
    """Download one video and its captions; the row says what happened (never raises for the video)."""
    from yt_dlp.networking.exceptions import RequestError
    from yt_dlp.utils import DownloadError

    logger.messages = []
    try:
        info = read_info(ydl, vid, cfg)
        lang = pick_captions(info, cfg.caption_langs)
        if lang is None and cfg.require_captions:
            return missing(vid, "no_captions", f"no automatic captions in {list(cfg.caption_langs)}")
        ydl.params["subtitleslangs"] = [lang] if lang else []
        ydl.params["writeautomaticsub"] = lang is not None
        done = ydl.process_ie_result(info, download=True)
        return finish(vid, done, lang, store)
    except (DownloadError, RequestError, OSError, ValueError) as err:
        last = logger.redact(str(err))
        text = " | ".join(logger.messages + [last] if last not in logger.messages else logger.messages)
        return missing(vid, classify(text), text)


def missing(vid: str, reason: str, detail: str) -> dict:
    return {"id": vid, "status": "missing", "reason": reason, "detail": detail[-500:]}


def finish(vid: str, done: dict, lang: str | None, store: Store) -> dict:
    """Check the staged files, move them into the store, write the record last."""
    staged = store.staging / vid
    video = staged / f"{vid}.{done.get('ext', 'mp4')}"
    duration = probe_duration(video) if video.is_file() else None
    if duration is None or duration <= 0:
        shutil.rmtree(staged, ignore_errors=True)
        return missing(vid, "other", f"the downloaded video {video.name} has no readable duration")
    row = {"id": vid, "status": "ok", "reason": None, "bytes": video.stat().st_size,
           "duration": round(duration, 3), "sha256": io.file_sha256(video), "format_id": done.get("format_id"),
           "width": done.get("width"), "height": done.get("height"), "vcodec": done.get("vcodec"),
           "captions": None, "caption_lang": lang, "n_caption_words": 0,
           "title": done.get("title"), "description": (done.get("description") or "")[:5000]}
    if lang:
        vtt = staged / f"{vid}.{lang}.vtt"
        try:
            row["n_caption_words"] = len(read_vtt(vtt))
        except (OSError, FormatError) as err:
            shutil.rmtree(staged, ignore_errors=True)
            return missing(vid, "other", f"captions unreadable: {err}")
        row |= {"captions": str(store.captions(vid)), "captions_sha256": io.file_sha256(vtt), "captions_bytes": vtt.stat().st_size}
        _move(vtt, store.captions(vid))
    _move(video, store.video(vid))
    row["video"] = str(store.video(vid))
    io.atomic_write_json(store.record(vid), row)
    shutil.rmtree(staged, ignore_errors=True)
    return row


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)  # same file system: the store's .staging is inside the store


def fetch_ids(ids: list[str], cfg: FetchConfig, store_root: str | Path, env=os.environ) -> list[dict]:
    """Fetch every id (verified ones are skipped); one row per id, in order.

    Args:
        ids: distinct YouTube ids.
        cfg: the `fetch` section.
        store_root: where videos, captions and records are kept across runs.
        env: where `$TVTS_FETCH_PROXY` and `$TVTS_FETCH_COOKIES` are read.
    """
    from yt_dlp import YoutubeDL

    store = Store(store_root, cfg.verify)
    logger = CapturingLogger(Redactor([proxy_of(cfg, env)] + _passwords(proxy_of(cfg, env))))
    rows = []
    with YoutubeDL(ydl_params(cfg, store.staging, logger, env)) as ydl:
        for vid in ids:
            row = store.verified(vid)
            if row is not None:
                rows.append(row | {"skipped": True})
                continue
            rows.append(fetch_one(ydl, vid, cfg, store, logger))
            log.info("%s: %s%s", vid, rows[-1]["status"], f" ({rows[-1]['reason']})" if rows[-1]["reason"] else "")
    return rows


def _passwords(url: str) -> list[str]:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    return [p for p in (parts.password,) if p]
