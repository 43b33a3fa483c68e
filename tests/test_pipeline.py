"""align_asr + shard_clips run in-process on the smoke corpus and on hand-made bad input."""
from __future__ import annotations

import hashlib
import os
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tvts import io
from tvts.data import sharding, shards
from tvts.data.formats.yttemporal import read_video_list
from tvts.stages import align_asr, shard_clips

from conftest import SMOKE


def run_align(root: Path, out: Path, parts: int = 1, exp: str = "t") -> list[Path]:
    paths = []
    for part in range(parts):
        path = out / f"part-{part}.jsonl"
        assert align_asr.main(["--list", str(root / "videos.tsv"), "--part", str(part), "--parts", str(parts),
                               "--config", str(SMOKE), "--exp", exp, "--out", str(path)]) == 0
        paths.append(path)
    return paths


def run_shard(parts: list[Path], out: Path, workers: int = 1, exp: str = "t") -> dict:
    assert shard_clips.main(["--asr", *map(str, parts), "--out", str(out),
                             "--config", str(SMOKE), "--workers", str(workers), "--exp", exp]) == 0
    return json.loads((out / "manifest.json").read_text())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, smoke_corpus):
    out = tmp_path_factory.mktemp("run")
    root = smoke_corpus / "yttemporal"
    parts = run_align(root, out / "asr", parts=2)
    manifest = run_shard(parts, out / "shards", workers=2)
    return out, parts, manifest


def test_align_outputs(smoke_run, smoke_corpus):
    out, parts, _ = smoke_run
    rows = [r for p in parts for r in io.read_jsonl(p)]
    n_listed = len(read_video_list(smoke_corpus / "yttemporal/videos.tsv"))
    manifests = [json.loads((p.parent / p.name.replace(".jsonl", ".manifest.json")).read_text()) for p in parts]
    assert sum(m["counts"]["videos_in"] for m in manifests) == n_listed
    assert sum(m["counts"]["videos_kept"] for m in manifests) == len(rows) > 0
    for r in rows:
        times = [t for _, t in r["words"]]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= r["duration"]
        for w in r["windows"]:
            assert len(w["clips"]) == 4 and all(c["text"] for c in w["clips"])


def test_demo_bad_items_are_counted_not_fatal(smoke_run):
    out, parts, manifest = smoke_run
    upstream = manifest["counts"]["upstream_rejects"]
    assert upstream.get("missing_annotation") == 1
    assert upstream.get("empty_asr") == 1
    assert upstream.get("garbled_asr") == 1
    assert manifest["rejects"].get("video_unreadable", 0) + manifest["rejects"].get("window_beyond_video_end", 0) >= 1
    rejects = io.read_jsonl(out / "shards" / "rejects.jsonl")
    assert len(rejects) == manifest["counts"]["windows_rejected"] and all(r["reason"] for r in rejects)


def test_shards_content(smoke_run):
    out, _, manifest = smoke_run
    assert manifest["counts"]["train_windows"] > 0
    train = shards.list_shards(out / "shards", "train")
    assert [p.name for p in train] == manifest["outputs"]["train"]
    sample = next(shards.iter_tar_samples(train[0]))
    frames, meta = shards.decode_sample(sample, 16, np.random.default_rng(0))
    assert frames.shape[0] == 16 and min(frames.shape[1:3]) == 48 and frames.dtype == np.uint8
    assert len(meta["clips"]) == 4 and len(meta["frame_times"]) == sum(k.endswith(".jpg") for k in sample)
    assert meta["start"] <= meta["frame_times"][0] < meta["frame_times"][-1] <= meta["end"]
    assert "." not in sample["__key__"]


def test_shards_byte_reproducible(smoke_run, tmp_path, smoke_corpus):
    out, parts, _ = smoke_run
    run_shard(parts, tmp_path / "again", workers=1)
    first = {p.name: sha(p) for p in sorted((out / "shards").glob("*.tar"))}
    again = {p.name: sha(p) for p in sorted((tmp_path / "again").glob("*.tar"))}
    assert first == again and first


def test_split_by_video(smoke_run):
    out, _, _ = smoke_run
    ids = {}
    for split in shards.SPLITS:
        for p in shards.list_shards(out / "shards", split):
            for s in shards.iter_tar_samples(p):
                ids.setdefault(json.loads(s["json"])["video_id"], set()).add(split)
    assert all(len(v) == 1 for v in ids.values())


# ---- hand-made bad input: each case is skipped with its reason, the rest goes through ----

def good_item(smoke_corpus: Path) -> tuple[bytes, dict]:
    root = smoke_corpus / "yttemporal"
    for entry in read_video_list(root / "videos.tsv"):
        ann = entry.annotation_path(root)
        if ann.exists():
            data = json.loads(ann.read_text())
            if data["subtitles"] and entry.video_id.startswith("demo"):
                return entry.video_path(root).read_bytes(), data
    raise AssertionError("no good item in the smoke corpus")


def write_item(root: Path, vid: str, video: bytes | None, ann: dict | None) -> str:
    name = f"subset_0/data/{vid}.mp4"
    (root / "subset_0/data").mkdir(parents=True, exist_ok=True)
    (root / "subset_0/annotations").mkdir(parents=True, exist_ok=True)
    if video is not None:
        (root / name).write_bytes(video)
    if ann is not None:
        (root / f"subset_0/annotations/{vid}.json").write_text(json.dumps(ann, ensure_ascii=False))
    return name


def with_info(ann: dict, **info) -> dict:
    return {**ann, "info": {**ann["info"], **info}}


def short_video(seconds: float, fps: int = 8) -> bytes:
    """A real video of `seconds` (align_asr checks info.duration against the container's)."""
    import tempfile

    import av

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "short.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuv420p"
            for _ in range(int(seconds * fps)):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
            out.mux(stream.encode())
        return path.read_bytes()


BAD_CASES = {
    "corrupt": lambda v, a: (b"\x00not a video" * 500, a),
    "truncated": lambda v, a: (v[: len(v) // 3], a),
    "missing_annotation": lambda v, a: (v, None),
    "missing_video": lambda v, a: (None, a),
    "empty_asr": lambda v, a: (v, {**a, "subtitles": []}),
    "garbled": lambda v, a: (v, {**a, "subtitles": [{"word": "\u00c3\u00a9\u00e2\u20ac\u00a6\u8fd9\u662f", "time": i * 0.5}
                                                    for i in range(60)]}),
    "mis_encoded_bytes": lambda v, a: (v, {**a, "subtitles": [{"word": "\ufffd\ufffd", "time": i * 0.5} for i in range(60)]}),
    "denoised_too_long": lambda v, a: (v, {**a, "denoised": a["denoised"] * 10}),
    "denoised_too_short": lambda v, a: (v, {**a, "denoised": a["denoised"][:1]}),
    "zero_duration": lambda v, a: (v, with_info(a, duration=0)),
    "shorter_than_window": lambda v, a: (short_video(9.0), with_info(a, duration=9.0)),
    "duration_beyond_the_video": lambda v, a: (v, with_info(a, duration=1e7)),
}
EXPECTED = {"corrupt": "video_unreadable", "truncated": ("video_unreadable", "window_beyond_video_end"),
            "missing_annotation": "missing_annotation", "missing_video": "missing_video", "empty_asr": "empty_asr",
            "garbled": "garbled_asr", "mis_encoded_bytes": "garbled_asr",
            "denoised_too_long": "denoised_length_mismatch", "denoised_too_short": "denoised_length_mismatch",
            "zero_duration": "zero_duration", "shorter_than_window": "video_shorter_than_window",
            "duration_beyond_the_video": "duration_mismatch"}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, smoke_corpus):
    root = tmp_path_factory.mktemp("bad") / "yttemporal"
    video, ann = good_item(smoke_corpus)
    names = [write_item(root, "good_0", video, ann), write_item(root, "good_1", video, ann)]
    for case, make in BAD_CASES.items():
        names.append(write_item(root, f"bad_{case}", *make(video, ann)))
    (root / "videos.tsv").write_text("Name\tduration\n" + "".join(f"{n}\t1\n" for n in names))
    parts = run_align(root, root.parent / "asr")
    manifest = run_shard(parts, root.parent / "shards")
    reasons = {re.sub(r"_w\d{3}$", "", r["item"]): r["reason"] for p in [root.parent / "asr/part-0.rejects.jsonl",
                                                               root.parent / "shards/rejects.jsonl"]
               for r in io.read_jsonl(p)}
    return root.parent, manifest, reasons


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_skipped_with_reason(bad_run, case):
    _, _, reasons = bad_run
    expected = EXPECTED[case]
    assert reasons.get(f"bad_{case}") in (expected if isinstance(expected, tuple) else (expected,))


def test_bad_input_rest_goes_through(bad_run):
    out, manifest, reasons = bad_run
    assert "good_0" not in reasons and "good_1" not in reasons
    assert manifest["counts"]["windows"] > 0
    for tar in (out / "shards").glob("*.tar"):  # no empty shard
        assert sum(1 for _ in shards.iter_tar_samples(tar)) > 0
    total = sum(manifest["rejects"].values()) + sum(manifest["counts"]["upstream_rejects"].values())
    assert total >= len(BAD_CASES)


def test_missing_list_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="video list not found"):
        align_asr.main(["--list", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "p.jsonl")])


def test_inspect_shards(smoke_run, tmp_path, capsys):
    from PIL import Image

    from tvts.stages import inspect_shards

    out, _, _ = smoke_run
    png = tmp_path / "sheet.png"
    assert inspect_shards.main([str(out / "shards"), "-n", "2", "--frames", "8", "--png", str(png)]) == 0
    printed = capsys.readouterr().out
    first = next(shards.iter_tar_samples(shards.list_shards(out / "shards", "train")[0]))
    assert json.loads(first["json"])["clips"][0]["text"] in printed
    width, height = Image.open(png).size
    assert height == 2 * 48 and width >= 8 * 48


def test_contact_sheet_takes_videos_of_different_aspect_ratios():
    """Real corpora mix 16:9, 4:3 and portrait videos: every row is scaled to one height."""
    from tvts.data.inspect import contact_sheet

    wide = np.full((3, 48, 85, 3), 200, np.uint8)     # 16:9 at short side 48
    tall = np.full((3, 64, 48, 3), 100, np.uint8)     # portrait
    sheet = np.asarray(contact_sheet([wide, tall]))
    assert sheet.shape == (96, 3 * 85, 3)
    assert (sheet[:48] == 200).all() and (sheet[48:, :3 * 36] == 100).all() and (sheet[48:, 3 * 36:] == 0).all()


def crashing_shard_video(task):
    """Stands in for a decoder that segfaults on one corrupt file."""
    if task[0]["id"] == "good_1":
        os._exit(139)
    return ORIGINAL_SHARD_VIDEO(task)


ORIGINAL_SHARD_VIDEO = sharding.shard_video


def test_decoder_crash_costs_one_video(bad_run, monkeypatch, tmp_path):
    """A worker that dies mid-video is isolated: that video is rejected, the rest go through."""
    out, _, _ = bad_run
    monkeypatch.setattr(sharding, "shard_video", crashing_shard_video)
    manifest = run_shard([out / "asr" / "part-0.jsonl"], tmp_path / "shards", workers=2)
    reasons = {r["item"]: r["reason"] for r in io.read_jsonl(tmp_path / "shards" / "rejects.jsonl")}
    assert reasons["good_1"] == "decoder_crashed"
    assert manifest["counts"]["windows"] > 0  # good_0 still made it
    assert reasons.get("bad_corrupt") == "video_unreadable"


def test_make_demo_cli_logs_a_run(tmp_path):
    import mlflow

    from tvts.stages import make_demo

    assert make_demo.main(["--config", str(SMOKE), "--out", str(tmp_path / "demo"), "--workers", "1"]) == 0
    assert (tmp_path / "demo" / "yttemporal" / "videos.tsv").exists()
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("tvts").experiment_id],
                              "tags.`tvts.stage` = 'make_demo'")
    assert runs and runs[0].data.metrics["files"] > 0
