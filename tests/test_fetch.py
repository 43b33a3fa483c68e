"""fetch_videos and join_fetched against a stand-in for YouTube on 127.0.0.1 (tests/fetchserver.py):
yt-dlp's real format selection, HTTP downloader and caption download, every failure class in the
availability snapshot, the resume after a kill, and credentials kept out of every log."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tvts import io
from tvts.config import ConfigError, from_dict
from tvts.data.fetch.config import FetchConfig
from tvts.data.fetch.download import Store, classify, pick_format
from tvts.io import file_sha256 as sha256_of
from tvts.data.formats.yttemporal import load_annotation, read_video_list
from tvts.stages import fetch_videos, join_fetched

from fetchserver import FakeYouTube

WORDS = ("we fold the paper in half then we fold it again and press the edge down firmly "
         "now open the flap and turn it over to make the wing").split()
GOOD, FORBIDDEN, GONE, MEDIA_404, CUT, STALL, SILENT, FLAKY = (
    "good0000001", "forbidden01", "gone0000001", "media404001", "truncated01", "stalled0001",
    "nocaptions1", "flakybody01")


@pytest.fixture
def site(tmp_path):
    server = FakeYouTube(tmp_path / "site")
    (tmp_path / "site").mkdir(exist_ok=True)
    yield server
    server.close()


def fetch_cfg(site, tmp_path, **kw) -> dict:
    """The `fetch` section as the rules pass it: fast retries, a 1 s socket timeout."""
    return {"ids": str(tmp_path / "release"), "store": str(tmp_path / "store"), "info_url": site.url + "/info/{id}.json",
            "retries": 1, "backoff_s": 0.05, "socket_timeout_s": 1.0, **kw}


def write_release(folder: Path, rows: list[dict]) -> None:
    """The release's layout: gzipped jsonl partitions, here two."""
    folder.mkdir(parents=True, exist_ok=True)
    half = len(rows) // 2
    for i, part in enumerate((rows[:half], rows[half:])):
        with gzip.open(folder / f"yttemporal180m_{i:03d}of002.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)


def run_fetch(cfg: dict, out: Path, part: int = 0, parts: int = 1) -> list[dict]:
    assert fetch_videos.main(["--config-json", json.dumps({"fetch": cfg}), "--part", str(part), "--parts", str(parts),
                              "--out", str(out), "--exp", "fetchtest"]) == 0
    return io.read_jsonl(out)


def test_every_failure_class_is_in_the_part_manifest(site, tmp_path):
    site.add_video(GOOD, WORDS)
    site.add_video(FORBIDDEN, WORDS, behaviour="http_403")
    site.add_video(MEDIA_404, WORDS, behaviour="http_404")
    site.add_video(CUT, WORDS, behaviour="truncate")
    site.add_video(STALL, WORDS, behaviour="stall")
    site.add_video(SILENT, WORDS, captions=False)
    site.add_video(FLAKY, WORDS, behaviour="truncate_once")
    ids = [GOOD, FORBIDDEN, GONE, MEDIA_404, CUT, STALL, SILENT, FLAKY, GOOD]  # GOOD listed twice
    write_release(tmp_path / "release", [{"id": v, "denoised": [{"cleanasr": "We fold."}]} for v in ids]
                  + [{"id": "not-an-id"}])
    rows = {r["id"]: r for r in run_fetch(fetch_cfg(site, tmp_path), tmp_path / "part-0.jsonl")}

    assert list(rows) == [GOOD, FORBIDDEN, GONE, MEDIA_404, CUT, STALL, SILENT, FLAKY]  # every distinct id, once
    reasons = {vid: r["reason"] for vid, r in rows.items()}
    assert reasons == {GOOD: None, FORBIDDEN: "bot_check_403", GONE: "removed_or_private", MEDIA_404: "removed_or_private",
                       CUT: "other", STALL: "timeout", SILENT: "no_captions", FLAKY: None}
    assert "more expected" in rows[CUT]["detail"] and "timed out" in rows[STALL]["detail"]
    store = Store(tmp_path / "store")
    for vid in (GOOD, FLAKY):  # present: bytes, duration and sha256 of the file in the store
        row = rows[vid]
        assert row["status"] == "ok" and row["sha256"] == sha256_of(store.video(vid))
        assert row["bytes"] == store.video(vid).stat().st_size and row["duration"] == pytest.approx(6.0, abs=0.1)
        assert row["caption_lang"] == "en" and row["n_caption_words"] == len(WORDS)
    assert rows[GOOD]["listed"] == 2
    assert not store.video(SILENT).exists() and site.hits[f"/media/{SILENT}.mp4"] == 0  # no captions: no download
    # The smallest format with a short side >= 268 (272p), never the 144p or the 720p one.
    assert rows[GOOD]["height"] == 272 and not [p for p in site.hits if "144p" in p or "720p" in p]
    manifest = json.loads((tmp_path / "part-0.manifest.json").read_text())
    for key, value in {"ids": 8, "ok": 2, "missing": 6, "missing_bot_check_403": 1, "missing_removed_or_private": 2,
                       "missing_timeout": 1, "missing_other": 1, "missing_no_captions": 1, "missing_geo_blocked": 0,
                       "duplicate_listings": 1}.items():
        assert manifest["counts"][key] == value, key
    assert manifest["rejects"] == {"bad_id": 1}


def test_a_rerun_skips_verified_videos_and_refetches_a_changed_one(site, tmp_path):
    for vid in (GOOD, FLAKY):
        site.add_video(vid, WORDS)
    (tmp_path / "ids.txt").write_text(f"# two videos\n{GOOD}\n{FLAKY}\n")
    cfg = fetch_cfg(site, tmp_path, ids=str(tmp_path / "ids.txt"))
    first = run_fetch(cfg, tmp_path / "a.jsonl")
    Store(tmp_path / "store").video(FLAKY).write_bytes(b"bitrot")
    second = {r["id"]: r for r in run_fetch(cfg, tmp_path / "b.jsonl")}
    assert second[GOOD].get("skipped") and site.hits[f"/media/{GOOD}.mp4"] == 1
    assert not second[FLAKY].get("skipped") and site.hits[f"/media/{FLAKY}.mp4"] == 2
    assert second[FLAKY]["sha256"] == first[1]["sha256"]


def test_verify_size_trusts_a_same_size_file_without_reading_it(site, tmp_path):
    site.add_video(GOOD, WORDS)
    (tmp_path / "ids.txt").write_text(f"{GOOD}\n")
    cfg = fetch_cfg(site, tmp_path, ids=str(tmp_path / "ids.txt"), verify="size")
    run_fetch(cfg, tmp_path / "a.jsonl")
    video = Store(tmp_path / "store").video(GOOD)
    video.write_bytes(b"x" * video.stat().st_size)  # same size, other bytes: size cannot tell
    assert run_fetch(cfg, tmp_path / "b.jsonl")[0].get("skipped")
    video.write_bytes(b"short")
    assert not run_fetch(cfg, tmp_path / "c.jsonl")[0].get("skipped") and site.hits[f"/media/{GOOD}.mp4"] == 2


def test_the_workflow_config_needs_ids_and_a_model_with_fetching(tmp_path):
    from tvts.workflow_config import validate_workflow_config

    schema = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/smoke.yaml").read_text())
    base |= {"data": {"yttemporal_list": str(tmp_path / "corpus/videos.tsv")}, "dag": {"align_parts": 1, "fetch": True}}
    with pytest.raises(ConfigError, match=r"^fetch.ids: must name"):
        validate_workflow_config(base, schema)
    with pytest.raises(ConfigError, match=r"^fetch.ids: .*ids.txt not found"):
        validate_workflow_config(base | {"fetch": {"ids": str(tmp_path / "ids.txt")}}, schema)
    (tmp_path / "ids.txt").write_text("abcdefghijk\n")
    fetching = base | {"fetch": {"ids": str(tmp_path / "ids.txt")}}
    validate_workflow_config(fetching, schema)  # the list the join writes need not exist yet
    with pytest.raises(ConfigError, match=r"^transcribe.model: must name"):
        validate_workflow_config(fetching | {"dag": {"align_parts": 1, "fetch": True, "transcribe": True}}, schema)


def test_parts_split_the_distinct_ids(site, tmp_path):
    ids = [f"vid{i:08d}" for i in range(3)]
    for vid in ids:
        site.add_video(vid, WORDS, extra_formats=False)
    (tmp_path / "ids.txt").write_text("\n".join(ids + ids[:1]) + "\n")
    cfg = fetch_cfg(site, tmp_path, ids=str(tmp_path / "ids.txt"))
    got = [[r["id"] for r in run_fetch(cfg, tmp_path / f"p{p}.jsonl", p, 2)] for p in (0, 1)]
    assert got == [[ids[0], ids[2]], [ids[1]]]


def written_part(folder: Path) -> bool:
    return any(p.stat().st_size > 0 for p in folder.glob("*.mp4.part"))


def test_kill_mid_download_then_rerun_loses_nothing(site, tmp_path):
    """A part killed while a video is half downloaded: the finished video is kept (not fetched
    again), the half one resumes from its .part file with a Range request, and nothing partial
    is ever in the store."""
    site.add_video(GOOD, WORDS)
    site.add_video(FLAKY, WORDS, behaviour="hold")  # half the body, then the connection hangs
    (tmp_path / "ids.txt").write_text(f"{GOOD}\n{FLAKY}\n")
    cfg = fetch_cfg(site, tmp_path, ids=str(tmp_path / "ids.txt"), socket_timeout_s=120.0)
    cmd = [sys.executable, "-m", "tvts.cli", "fetch-videos", "--config-json", json.dumps({"fetch": cfg}),
           "--out", str(tmp_path / "part-0.jsonl"), "--exp", "fetchtest"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert site.served_half.wait(300), "the held download never started"
        store = Store(tmp_path / "store")
        deadline = time.monotonic() + 60
        while not written_part(tmp_path / "store" / ".staging" / FLAKY) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    site.release.set()
    assert not (tmp_path / "part-0.jsonl").exists() and not store.video(FLAKY).exists()
    assert store.verified(GOOD) is not None  # finished before the kill: recorded, verified

    rows = {r["id"]: r for r in run_fetch(cfg, tmp_path / "part-0.jsonl")}
    assert rows[GOOD].get("skipped") and site.hits[f"/media/{GOOD}.mp4"] == 1
    assert rows[FLAKY]["status"] == "ok" and rows[FLAKY]["sha256"] == sha256_of(store.video(FLAKY))
    resumed_at = [int(r.split("=")[1].rstrip("-")) for p, r in site.ranges if p == f"/media/{FLAKY}.mp4"]
    assert len(resumed_at) == 1 and resumed_at[0] > 0  # one Range request, from what the .part held
    assert rows[FLAKY]["sha256"] == hashlib.sha256(site.media[f"{FLAKY}.mp4"][0]).hexdigest()
    assert not list((tmp_path / "store" / ".staging").rglob("*.part"))


def test_proxy_credentials_are_used_and_never_logged(site, tmp_path, monkeypatch, mlflow_dir, caplog):
    site.add_video(GOOD, WORDS)
    (tmp_path / "ids.txt").write_text(f"{GOOD}\ngone0000001\n")
    monkeypatch.setenv("TVTS_FETCH_PROXY", f"http://alice:s3cr3t-pw@127.0.0.1:{site.httpd.server_address[1]}")
    rows = run_fetch(fetch_cfg(site, tmp_path, ids=str(tmp_path / "ids.txt")), tmp_path / "part-0.jsonl")
    assert rows[0]["status"] == "ok"
    assert site.proxy_auth and all(a.startswith("Basic ") for a in site.proxy_auth)  # the proxy got them
    assert "s3cr3t" not in caplog.text
    for folder in (tmp_path, mlflow_dir):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix not in (".mp4", ".part"):
                assert b"s3cr3t" not in path.read_bytes(), path


def test_a_proxy_with_credentials_in_the_config_is_refused():
    with pytest.raises(ConfigError, match=r"fetch.proxy: .*TVTS_FETCH_PROXY"):
        from_dict(FetchConfig, {"proxy": "http://bob:pw@proxy:3128"}, "fetch")
    assert from_dict(FetchConfig, {"proxy": "socks5://proxy:1080"}, "fetch").proxy == "socks5://proxy:1080"


def fmt(fid, w, h, vcodec="avc1.4d401e", ext="mp4", acodec="mp4a.40.2", size=1000):
    return {"format_id": fid, "width": w, "height": h, "vcodec": vcodec, "ext": ext, "acodec": acodec, "filesize": size}


def test_format_choice_smallest_above_the_short_side_h264_first():
    cfg = FetchConfig()
    formats = [fmt("160", 256, 144), fmt("18", 640, 360), fmt("243", 640, 360, "vp9", "webm", size=10),
               fmt("22", 1280, 720), fmt("134", 640, 360, acodec="none", size=5)]
    assert pick_format(formats, cfg)["format_id"] == "18"  # with sound, H.264 mp4 over the smaller VP9
    assert pick_format(formats, FetchConfig(with_audio=False))["format_id"] == "134"
    portrait = [fmt("a", 360, 640), fmt("b", 720, 1280)]
    assert pick_format(portrait, cfg)["format_id"] == "a"  # the short side is the width here
    assert pick_format([fmt("s", 320, 180), fmt("t", 426, 240)], cfg)["format_id"] == "t"  # none large enough: the largest


@pytest.mark.parametrize("message, reason", [
    ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", "removed_or_private"),
    ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", "removed_or_private"),
    ("ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies-from-browser", "bot_check_403"),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", "bot_check_403"),
    ("ERROR: [youtube] abc: The uploader has not made this video available in your country", "geo_blocked"),
    ("ERROR: [download] Got error: Read timed out.. Giving up after 5 retries", "timeout"),
    ("ERROR: Postprocessing: something else", "other"),
])
def test_failure_messages_are_classified(message, reason):
    assert classify(message) == reason


def test_join_writes_what_align_asr_reads(site, tmp_path):
    site.add_video(GOOD, WORDS)
    site.add_video(FLAKY, WORDS)
    write_release(tmp_path / "release", [{"id": GOOD, "title": "Paper crane", "denoised": [{"cleanasr": "We fold the paper."}]},
                                         {"video_id": FLAKY}])
    cfg = fetch_cfg(site, tmp_path)
    run_fetch(cfg, tmp_path / "part-0.jsonl")
    video_list = tmp_path / "corpus" / "videos.tsv"
    assert join_fetched.main(["--config-json", json.dumps({"fetch": cfg}), "--parts", str(tmp_path / "part-0.jsonl"),
                              "--availability", str(tmp_path / "availability.json"), "--list", str(video_list),
                              "--exp", "fetchtest"]) == 0
    entries = read_video_list(video_list)
    assert [e.name for e in entries] == [f"yttemporal180m/data/{GOOD}.mp4", f"yttemporal180m/data/{FLAKY}.mp4"]
    good = load_annotation(entries[0], video_list.parent)
    assert good.denoised == [{"cleanasr": "We fold the paper."}] and good.info["title"] == "Paper crane"
    assert [w["word"] for w in good.subtitles] == WORDS and good.duration == pytest.approx(6.0, abs=0.1)
    flaky = load_annotation(entries[1], video_list.parent)  # no denoised in the release: the captions stand in
    assert flaky.denoised == [{"cleanasr": " ".join(WORDS)}] and flaky.info["title"] == f"video {FLAKY}"
    assert entries[0].video_path(video_list.parent).stat().st_ino == Store(tmp_path / "store").video(GOOD).stat().st_ino
    snap = json.loads((tmp_path / "availability.json").read_text())
    assert set(snap["videos"]) == {GOOD, FLAKY} and snap["counts"]["ok"] == 2
    assert snap["videos"][GOOD]["sha256"] == sha256_of(Store(tmp_path / "store").video(GOOD))
