"""The post-pretraining data: the demo's CC3M/WebVid-format pairs, the shard_pairs stage, its rejects,
and how a pair becomes model input."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tvts.data.demo.pairs import generate_pairs
from tvts.data.formats.common import PairItem
from tvts.data.pairs import PairShardConfig, part_of, write_pair_shards
from tvts.data.shards import iter_tar_samples, list_shards
from tvts.io import Rejects
from tvts.stages import shard_pairs
from tvts.train.pair_data import PairView, pair_frames

CFG = {"shard_pairs": {"frames_per_clip": 8, "short_side": 40, "jpeg_quality": 85, "val_fraction": 0.3,
                       "samples_per_shard": 8}}


@pytest.fixture(scope="module")
def pair_corpus(tmp_path_factory, smoke_demo_config) -> Path:
    root = tmp_path_factory.mktemp("pairs") / "corpus"
    root.mkdir()
    generate_pairs(root, smoke_demo_config)
    return root


def run_stage(corpus: Path, out: Path, part: int = 0, parts: int = 1) -> dict:
    argv = ["--cc3m", str(corpus / "cc3m/cc3m_train.tsv"), "--cc3m-images", str(corpus / "cc3m/training"),
            "--webvid", str(corpus / "webvid/results_2M_train.csv"), "--webvid-videos", str(corpus / "webvid/videos"),
            "--part", str(part), "--parts", str(parts), "--out", str(out), "--config-json", json.dumps(CFG),
            "--exp", "t"]
    assert shard_pairs.main(argv) == 0
    return json.loads((out / "manifest.json").read_text())


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_pairs_are_byte_reproducible(tmp_path, pair_corpus, smoke_demo_config):
    again = tmp_path / "again"
    again.mkdir()
    counts = generate_pairs(again, smoke_demo_config)
    assert digests(again) == digests(pair_corpus)
    assert counts["cc3m"] == {"images": 24, "bad_rows": 3} and counts["webvid"] == {"clips": 12, "bad_rows": 1}


def test_shard_pairs_writes_both_kinds_counts_rejects_once_and_is_reproducible(tmp_path, pair_corpus):
    whole = run_stage(pair_corpus, tmp_path / "whole")
    c = whole["counts"]
    assert c["image_train"] + c["image_val"] == 24 and c["video_train"] + c["video_val"] == 12
    assert min(c["image_val"], c["video_val"], c["image_train"], c["video_train"]) >= 1
    # the demo's broken rows: a missing image, a truncated JPEG, a zero-length mp4, a repeated id
    assert whole["rejects"] == {"duplicate_id": 1, "empty_video": 1, "image_unreadable": 1, "missing_image": 1}
    parts = [run_stage(pair_corpus, tmp_path / f"part-{i}", i, 2) for i in range(2)]
    assert sum(p["counts"]["pairs"] for p in parts) == c["pairs"]
    total: dict[str, int] = {}
    for p in parts:  # every part reads the whole tables, yet each reject is counted by one part only
        for reason, n in p["rejects"].items():
            total[reason] = total.get(reason, 0) + n
    assert total == whole["rejects"]
    run_stage(pair_corpus, tmp_path / "again")
    shards = lambda root: {k: v for k, v in digests(root).items() if k != "manifest.json"}  # noqa: E731 (timings)
    assert shards(tmp_path / "again") == shards(tmp_path / "whole")
    clip = next(iter_tar_samples(list_shards(tmp_path / "whole" / "video", "train")[0]))
    assert sum(k.endswith(".jpg") for k in clip) == 8 and json.loads(clip["json"])["kind"] == "video"
    image = next(iter_tar_samples(list_shards(tmp_path / "whole" / "image", "train")[0]))
    assert sum(k.endswith(".jpg") for k in image) == 1 and min(Image.open(io.BytesIO(image["f000.jpg"])).size) == 40


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (60, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_clip(path: Path) -> None:
    """A 1 s, 8 fps clip (H.264, the demo's encoder)."""
    from tvts.data.demo import DemoConfig
    from tvts.data.demo.encode import encode_video, rgb_to_yuv420p

    frames = np.full((8, 32, 32, 3), 120, np.uint8)
    encode_video(path, rgb_to_yuv420p(frames), "libx264", DemoConfig())


def test_bad_pairs_are_skipped_and_counted_by_reason(tmp_path):
    """Each bad input of the issue: skipped with its reason, the good pairs kept; a long caption is
    cut (counted), never the pair."""
    good = jpeg((200, 30, 30))
    (tmp_path / "ok.jpg").write_bytes(good)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "empty.mp4").write_bytes(b"")
    items = [PairItem("a", "a red thing", "image", data=good),
             PairItem("b", "a file", "image", path=str(tmp_path / "ok.jpg")),
             PairItem("gone", "a missing image", "image", path=str(tmp_path / "nope.jpg")),
             PairItem("cut", "a truncated JPEG", "image", path=str(tmp_path / "cut.jpg")),
             PairItem("zero", "a zero-length mp4", "video", path=str(tmp_path / "empty.mp4")),
             PairItem("blank", "  \t ", "image", data=good),
             PairItem("long", "word " * 2000, "image", data=good),
             PairItem("a", "the same id again", "image", data=good),
             PairItem("odd", "a sound", "audio", data=good),
             PairItem("ok", "a clip whose id is an image's", "video", path=str(tmp_path / "clip.mp4"))]
    rejects = Rejects("shard_pairs")
    items[1] = PairItem("ok", "a file", "image", path=str(tmp_path / "ok.jpg"))
    write_clip(tmp_path / "clip.mp4")
    sinks = write_pair_shards(items, tmp_path / "out", PairShardConfig(short_side=32, val_fraction=0.5), rejects)
    assert rejects.counts() == {"duplicate_id": 1, "empty_caption": 1, "image_unreadable": 1, "missing_image": 1,
                                "unknown_kind": 1, "video_unreadable": 1}
    counts = sinks.counts()
    assert counts["pairs"] == 4 and counts["captions_truncated"] == 1 and counts["video_train"] + counts["video_val"] == 1
    metas = [json.loads(s["json"]) for split in ("train", "val")
             for shard in list_shards(tmp_path / "out" / "image", split) for s in iter_tar_samples(shard)]
    assert sorted(m["id"] for m in metas) == ["a", "long", "ok"]
    assert max(len(m["caption"]) for m in metas) == PairShardConfig().max_caption_chars


def test_a_table_row_with_too_few_columns_stops_the_stage_naming_file_and_line(tmp_path):
    table = tmp_path / "cc3m.tsv"
    table.write_text("caption\timage\na red thing\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"cc3m.tsv:2"):
        shard_pairs.main(["--cc3m", str(table), "--cc3m-images", str(tmp_path), "--out", str(tmp_path / "out"),
                          "--config-json", json.dumps(CFG), "--exp", "t"])
    assert not (tmp_path / "out").exists()


def test_parts_are_by_key_stem_so_duplicates_meet_in_one_part():
    assert part_of("a.b", 7) == part_of("a_b", 7)
    assert {part_of(str(i), 4) for i in range(200)} == {0, 1, 2, 3}


def test_an_image_is_its_frame_repeated_to_one_tubelet_and_a_clip_four_segment_frames():
    view = PairView(img_size=32, tubelet=2, clip_frames=4, flip=False)
    image = {"json": b"{}", "f000.jpg": jpeg((10, 200, 10))}
    frames = pair_frames(image, "image", view, np.random.default_rng(0))
    assert frames.shape == (3, 2, 32, 32) and torch.equal(frames[:, 0], frames[:, 1])
    # 8 stored frames of increasing brightness: one per segment of 2, the centre one in validation
    clip = {f"f{i:03d}.jpg": jpeg((30 * i, 30 * i, 30 * i)) for i in range(8)}
    centre = pair_frames(clip, "video", view, None)
    assert centre.shape == (3, 4, 32, 32)
    means = centre.mean(dim=(0, 2, 3))
    assert torch.all(means[1:] > means[:-1])
    drawn = [pair_frames(clip, "video", view, np.random.default_rng(s)).mean(dim=(0, 2, 3)) for s in range(6)]
    assert any(not torch.allclose(d, centre.mean(dim=(0, 2, 3))) for d in drawn)
    for d in drawn:  # each frame from its own segment: still in time order
        assert torch.all(d[1:] > d[:-1])
