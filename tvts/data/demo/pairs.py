"""Captioned images (CC3M format) and captioned clips (WebVid format) of the demo world.

An image is one frame of a one-actor event, captioned with what it shows ("a red square");
a clip is `WEBVID_CLIP_S` seconds of one event, captioned with what happens ("The red square
moves to the left."). Sizes follow the pretraining corpus (`n_videos` images, half as many
clips, at least MIN_IMAGES and MIN_CLIPS). Layout, as the readers (tvts.data.formats) take it:
    cc3m/cc3m_train.tsv            caption <TAB> image path relative to cc3m/training/
    cc3m/training/<id>.jpg
    webvid/results_2M_train.csv    the release CSV: videoid,contentUrl,duration,page_dir,name
    webvid/videos/<page_dir>/<videoid>.mp4
With `bad_items`, a few rows are broken on purpose (a missing image, a truncated JPEG, a
zero-length mp4, a repeated id), so every demo run exercises the reject paths of shard_pairs.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.encode import encode_video, rgb_to_yuv420p
from tvts.data.demo.narration import fix_articles
from tvts.data.demo.plans import frame_count, item_rng, plan_track
from tvts.data.demo.render import render_frames
from tvts.data.demo.tracks import Step

WEBVID_CLIP_S = 2.0
CLIPS_PER_PAGE = 50          # clips per page_dir folder, as the release groups them
IMAGE_JPEG_QUALITY = 85
BAD_PAIRS = ("missing_image", "truncated_jpeg", "zero_length_mp4", "duplicate_id")


# At least a few batches of each, so a tiny corpus (the smoke config's 6 videos) still gives
# post-pretraining a train and a val split of both sources.
MIN_IMAGES, MIN_CLIPS = 24, 12


def n_images(cfg: DemoConfig) -> int:
    return max(MIN_IMAGES, cfg.n_videos)


def n_clips(cfg: DemoConfig) -> int:
    return max(MIN_CLIPS, cfg.n_videos // 2)


def page_dir(index: int) -> str:
    first = index // CLIPS_PER_PAGE * CLIPS_PER_PAGE + 1
    return f"{first:06d}_{first + CLIPS_PER_PAGE - 1:06d}"


def _event_track(cfg: DemoConfig, rng: np.random.Generator, length: float):
    return plan_track([Step(str(rng.choice(cfg.actions)), 0.0, length)], cfg, rng)


def make_cc3m_image(cfg: DemoConfig, root: Path, index: int) -> dict:
    """Write one captioned still (the middle frame of an event). Returns its TSV row."""
    rng = item_rng(cfg, "cc3m", index)
    length = rng.uniform(cfg.event_min_s, cfg.event_max_s)
    track = _event_track(cfg, rng, length)
    n = frame_count(length, cfg)
    frame = render_frames([track], n, cfg, rng, only=np.array([n // 2]))[0]
    name = f"{index:07d}.jpg"
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=IMAGE_JPEG_QUALITY, subsampling=2, optimize=False)
    (root / "cc3m" / "training" / name).write_bytes(buf.getvalue())
    return {"kind": "cc3m", "caption": fix_articles(f"a {track.color} {track.shape}"), "image": name}


def make_webvid_clip(cfg: DemoConfig, root: Path, index: int) -> dict:
    """Write one captioned clip of one event. Returns its release-CSV row."""
    rng = item_rng(cfg, "webvid", index)
    track = _event_track(cfg, rng, WEBVID_CLIP_S)
    frames = render_frames([track], frame_count(WEBVID_CLIP_S, cfg), cfg, rng)
    videoid, page = str(1_000_000 + index), page_dir(index)
    path = root / "webvid" / "videos" / page / f"{videoid}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(path, rgb_to_yuv420p(frames), "libx264", cfg)
    template = cfg.templates[track.steps[0].action][index % len(cfg.templates[track.steps[0].action])]
    caption = fix_articles(template.format(obj=f"{track.color} {track.shape}"))
    return {"kind": "webvid", "videoid": videoid, "page_dir": page, "duration": f"PT00H00M{int(WEBVID_CLIP_S):02d}S",
            "name": caption}


def pair_jobs(cfg: DemoConfig) -> list[tuple[str, int]]:
    """(subset, index) of every pair item, for the corpus's job list."""
    return [("cc3m", i) for i in range(n_images(cfg))] + [("webvid", i) for i in range(n_clips(cfg))]


def make_pair_item(cfg: DemoConfig, root: Path, subset: str, index: int) -> dict:
    (root / "cc3m" / "training").mkdir(parents=True, exist_ok=True)
    return make_cc3m_image(cfg, root, index) if subset == "cc3m" else make_webvid_clip(cfg, root, index)


def _break_some(root: Path, images: list[dict], clips: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of BAD_PAIRS added: the pipeline must count each, never train on it."""
    (root / "cc3m" / "training" / "missing.jpg").unlink(missing_ok=True)
    good = (root / "cc3m" / "training" / images[0]["image"]).read_bytes()
    (root / "cc3m" / "training" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    empty = root / "webvid" / "videos" / page_dir(0) / "999999.mp4"
    empty.write_bytes(b"")
    images = images + [{"caption": "a missing picture", "image": "missing.jpg"},
                       {"caption": "a truncated picture", "image": "truncated.jpg"},
                       dict(images[0], caption="the same image again")]
    clips = clips + [{"videoid": "999999", "page_dir": page_dir(0), "duration": "PT00H00M02S", "name": "nothing"}]
    return images, clips


def write_pair_tables(root: Path, cfg: DemoConfig, images: list[dict], clips: list[dict]) -> dict:
    """The CC3M TSV and the WebVid release CSV (broken rows added with `bad_items`). Returns counts."""
    n_good = (len(images), len(clips))
    if cfg.bad_items and images and clips:
        images, clips = _break_some(root, images, clips)
    with open(root / "cc3m" / "cc3m_train.tsv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n")
        out.writerow(["caption", "image"])
        out.writerows([r["caption"], r["image"]] for r in images)
    with open(root / "webvid" / "results_2M_train.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        out.writerows([r["videoid"], "", r["duration"], r["page_dir"], r["name"]] for r in clips)
    return {"cc3m": {"images": n_good[0], "bad_rows": len(images) - n_good[0]},
            "webvid": {"clips": n_good[1], "bad_rows": len(clips) - n_good[1]}}


def generate_pairs(root: Path, cfg: DemoConfig) -> dict:
    """Only the pair subsets, in this process, under `root` (what tests use; make-demo writes them
    with the rest of the corpus)."""
    rows = [make_pair_item(cfg, root, subset, i) for subset, i in pair_jobs(cfg)]
    return write_pair_tables(root, cfg, [r for r in rows if r["kind"] == "cc3m"],
                             [r for r in rows if r["kind"] == "webvid"])
