"""A stand-in for YouTube on 127.0.0.1: info JSONs whose format and caption URLs point back at
this server, real H.264 mp4s and YouTube-format word-timed WebVTT captions, and the failures a
fetch meets (404, 403, a truncated body, a stall, no captions).

`fetch.info_url: http://127.0.0.1:<port>/info/{id}.json` makes yt-dlp's own downloader fetch
from it. Every request is counted (`server.hits[path]`), so a test can tell a skipped video from
a fetched one. The server also answers as a forward HTTP proxy (absolute-URI requests), keeping
the `Proxy-Authorization` headers it saw.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from realvideo import encode_mp4

# Media behaviours: ok; http_403/http_404; truncate (always half the body, connection closed);
# truncate_once (then ok); stall (headers and half the body, then silence); hold (half the body,
# then wait until `release` is set: a download that a test kills).
BEHAVIOURS = ("ok", "http_403", "http_404", "truncate", "truncate_once", "stall", "hold")


def vtt_for(words: list[str], start: float = 0.5, step: float = 0.4, per_line: int = 6) -> str:
    """Word-timed WebVTT exactly as YouTube writes it: rolling two-line cues, each new line's
    words after the first carrying inline times, and a 10 ms cue repeating each finished line."""
    def ts(t: float) -> str:
        return f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:06.3f}"

    out = ["WEBVTT", "Kind: captions", "Language: en", ""]
    prev, t = " ", start
    for i in range(0, len(words), per_line):
        line = words[i:i + per_line]
        times = [t + k * step for k in range(len(line))]
        end = times[-1] + step
        timed = line[0] + "".join(f"<{ts(tk)}><c> {w}</c>" for w, tk in zip(line[1:], times[1:]))
        out += [f"{ts(times[0])} --> {ts(end)} align:start position:0%", prev, timed, ""]
        out += [f"{ts(end)} --> {ts(end + 0.01)} align:start position:0%", " ".join(line), " ", ""]
        prev, t = " ".join(line), end + 0.01
    return "\n".join(out)


class FakeYouTube:
    """The server and its content; `add_video` registers one id."""

    def __init__(self, root: Path):
        self.root = root
        self.infos: dict[str, dict] = {}
        self.media: dict[str, tuple[bytes, str]] = {}
        self.subs: dict[str, str] = {}
        self.hits: Counter = Counter()
        self.proxy_auth: list[str] = []
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of every ranged request
        self.release = threading.Event()
        self.served_half = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_video(self, vid: str, words: list[str], behaviour: str = "ok", captions: bool = True,
                  seconds: float = 6.0, size: tuple[int, int] = (480, 272), extra_formats: bool = True) -> None:
        """An info JSON with a small H.264+AAC mp4 (and, with `extra_formats`, a smaller and a
        larger one that the format choice must pass over), plus automatic English captions."""
        path = self.root / f"{vid}.mp4"
        encode_mp4(path, size[0], size[1], seconds)
        self.media[f"{vid}.mp4"] = (path.read_bytes(), behaviour)
        formats = [self._format(vid, "18", f"{vid}.mp4", size)]
        if extra_formats:  # URLs that must never be fetched: the choice is the 272p one
            formats += [self._format(vid, "160", f"{vid}-144p.mp4", (256, 144)),
                        self._format(vid, "22", f"{vid}-720p.mp4", (1280, 720))]
        info = {"id": vid, "title": f"video {vid}", "description": f"about {vid}", "duration": seconds,
                "extractor": "generic", "extractor_key": "Generic", "webpage_url": f"{self.url}/watch/{vid}",
                "formats": formats, "automatic_captions": {}, "subtitles": {}}
        if captions:
            self.subs[f"{vid}.vtt"] = vtt_for(words)
            info["automatic_captions"] = {
                "en": [{"ext": "json3", "url": f"{self.url}/subs/{vid}.json3"},
                       {"ext": "vtt", "url": f"{self.url}/subs/{vid}.vtt"}]}
        self.infos[vid] = info

    def _format(self, vid: str, fid: str, name: str, size: tuple[int, int]) -> dict:
        return {"format_id": fid, "url": f"{self.url}/media/{name}", "ext": "mp4", "protocol": "http",
                "vcodec": "avc1.42001E", "acodec": "mp4a.40.2", "width": size[0], "height": size[1]}


def _handler(site: FakeYouTube):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            if path.startswith("http://"):  # a forward-proxy request
                site.proxy_auth.append(self.headers.get("Proxy-Authorization", ""))
                path = urlsplit(path).path
            site.hits[path] += 1
            if self.headers.get("Range"):
                site.ranges.append((path, self.headers["Range"]))
            kind, _, name = path.lstrip("/").partition("/")
            if kind == "info" and name.removesuffix(".json") in site.infos:
                return self._send(json.dumps(site.infos[name.removesuffix(".json")]).encode(), "application/json")
            if kind == "subs" and name in site.subs:
                return self._send(site.subs[name].encode(), "text/vtt")
            if kind == "media" and name in site.media:
                return self._media(name, *site.media[name])
            self._status(404)

        def _status(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, body: bytes, ctype: str, start: int = 0, total: int | None = None) -> None:
            partial = start > 0
            self.send_response(206 if partial else 200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{total}")
            self.end_headers()
            self.wfile.write(body)

        def _media(self, name: str, data: bytes, behaviour: str) -> None:
            if behaviour in ("http_403", "http_404"):
                return self._status(int(behaviour[-3:]))
            m = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
            start = int(m.group(1)) if m else 0
            first = site.hits[f"/media/{name}"] == 1
            if behaviour == "ok" or (behaviour == "truncate_once" and not first) or (behaviour == "hold" and not first):
                return self._send(data[start:], "video/mp4", start, len(data))
            self._half(data, behaviour)

        def _half(self, data: bytes, behaviour: str) -> None:
            """Announce the whole body, send half of it, then fail as `behaviour` says."""
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if behaviour == "stall":
                time.sleep(30)
            elif behaviour == "hold":
                site.served_half.set()
                site.release.wait(120)
            self.close_connection = True

    return Handler
