"""The `fetch` and `transcribe` config sections (docs/configuration.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from tvts.config import require

COOKIES_ENV = "TVTS_FETCH_COOKIES"  # a cookies.txt path; wins over fetch.cookies
PROXY_ENV = "TVTS_FETCH_PROXY"      # a proxy URL, credentials allowed; wins over fetch.proxy


@dataclass(frozen=True)
class FetchConfig:
    """Downloading the release's videos and captions (tvts.data.fetch.download)."""

    ids: str = ""                  # release jsonl/jsonl.gz file(s): a file, a folder of them, or a .txt id list
    store: str = "datasets/yttemporal-fetch"  # videos, captions and per-id records, kept across reruns
    subset: str = "yttemporal180m"  # the <subset> folder of the joined corpus
    limit: int = 0                 # only the first N distinct ids (0 = all)
    min_short_side: int = 268      # smallest format whose short side reaches this (shard_clips.short_side)
    codec: str = "avc1"            # preferred video codec prefix (H.264), in an mp4
    with_audio: bool = True        # only formats with sound where there are any (transcribe needs it)
    caption_langs: tuple[str, ...] = ("en-orig", "en")  # automatic (word-timed) caption tracks, in order
    require_captions: bool = True  # no captions: the video is not downloaded (False: transcribe it)
    sleep_s: float = 0.0           # throttle: sleep before each download, drawn in [sleep_s, max_sleep_s]
    max_sleep_s: float = 0.0
    sleep_requests_s: float = 0.0  # sleep between the metadata requests of a video
    rate_limit: int = 0            # bytes/s per download (0 = none)
    retries: int = 5               # per request, with exponential backoff
    backoff_s: float = 2.0         # first retry's wait; doubled each retry
    max_backoff_s: float = 120.0
    socket_timeout_s: float = 30.0  # a stalled connection fails (and is retried) after this long
    cookies: str = ""              # cookies.txt (your own account's); or $TVTS_FETCH_COOKIES
    proxy: str = ""                # proxy URL without credentials; with credentials use $TVTS_FETCH_PROXY
    info_url: str = ""             # info JSON per id (`{id}` in a URL or path) instead of asking YouTube
    verify: str = "sha256"         # how a rerun checks a recorded file: sha256 (reads it all) or size

    def check(self, where: str) -> None:
        require(self.limit >= 0, where, "limit", "must be >= 0 (0 = all)")
        require(self.min_short_side >= 1, where, "min_short_side", "must be >= 1")
        require(len(self.caption_langs) > 0, where, "caption_langs", "must name at least one language")
        require(0 <= self.sleep_s <= max(self.max_sleep_s, self.sleep_s), where, "sleep_s", "must be >= 0")
        require(self.sleep_requests_s >= 0, where, "sleep_requests_s", "must be >= 0")
        require(self.rate_limit >= 0, where, "rate_limit", "must be >= 0 (0 = none)")
        require(self.retries >= 0, where, "retries", "must be >= 0")
        require(self.backoff_s >= 0 and self.max_backoff_s >= 0, where, "backoff_s", "must be >= 0")
        require(self.socket_timeout_s > 0, where, "socket_timeout_s", "must be > 0")
        require(not self.info_url or "{id}" in self.info_url, where, "info_url", "must contain {id}")
        require(self.verify in ("sha256", "size"), where, "verify", "must be sha256 or size")
        # The config is logged (manifest, MLflow, Snakemake's command line): no secrets in it.
        require(not urlsplit(self.proxy).password if self.proxy else True, where, "proxy",
                f"has credentials; put that proxy URL in ${PROXY_ENV} instead, which is never logged")


def logged_config(cfg: FetchConfig) -> dict:
    """The section as it may be logged: `check` keeps credentials out of `proxy`, and the
    environment's proxy and cookies are not in it at all (only whether they are set is logged)."""
    return dict(vars(cfg))


def proxy_of(cfg: FetchConfig, env=os.environ) -> str:
    return env.get(PROXY_ENV) or cfg.proxy


def cookies_of(cfg: FetchConfig, env=os.environ) -> str:
    return env.get(COOKIES_ENV) or cfg.cookies


@dataclass(frozen=True)
class TranscribeConfig:
    """Whisper through transformers, for videos without captions (tvts.data.transcribe)."""

    model: str = ""                # a local folder with a Whisper model (nothing is downloaded)
    language: str = "en"
    all_videos: bool = False       # also transcribe videos that have captions (replacing them)
    chunk_s: float = 30.0          # Whisper's window
    batch_size: int = 4
    device: str = "auto"           # auto, cpu or cuda

    def check(self, where: str) -> None:
        require(self.chunk_s > 0, where, "chunk_s", "must be > 0")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.device in ("auto", "cpu", "cuda"), where, "device", "must be auto, cpu or cuda")
