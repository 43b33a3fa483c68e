"""One clip of a downstream set: SSV2 format (classification) or MSR-VTT format (retrieval).

The SSV2-format set reuses the same renderer, speeds, sizes, event lengths and gaps
(docs/demo-corpus.md, "Probe and pretraining must share speeds"). With the default layout
"events", a clip is two pretraining-like events by two actors and its class is the
ordered pair of actions; every class has its time reverse among the classes, so neither
single frames nor the unordered set of frames separates them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.encode import encode_video, rgb_to_yuv420p
from tvts.data.demo.layout import SSV2_VIDEO_DIR
from tvts.data.demo.narration import fix_articles
from tvts.data.demo.plans import frame_count, item_rng, plan_ssv2_clip, plan_track
from tvts.data.demo.render import render_frames
from tvts.data.demo.tracks import Step, Track


def _ssv2_label(template: str, placeholders: list[str]) -> str:
    """The template with its k-th [something] replaced by the k-th placeholder (or the last one)."""
    parts = re.split(r"\[something\]", template, flags=re.IGNORECASE)
    text = parts[0] + "".join(placeholders[min(k, len(placeholders) - 1)] + part for k, part in enumerate(parts[1:]))
    return text[:1].upper() + text[1:]


def make_ssv2_clip(cfg: DemoConfig, root: Path, split: str, index: int) -> dict:
    """Write one SSV2-format clip; classes cycle with the index so splits are balanced.

    Returns:
        The clip's list entry: {"id", "label", "template", "placeholders"}, one placeholder per actor.
    """
    rng = item_rng(cfg, f"ssv2_{split}", index)
    templates = list(cfg.ssv2_classes)
    template = templates[index % len(templates)]
    tracks, duration = plan_ssv2_clip(list(cfg.ssv2_classes[template]), cfg, rng)
    frames = render_frames(tracks, frame_count(duration, cfg), cfg, rng)
    offset = 0 if split == "train" else cfg.ssv2_train_per_class * len(templates)
    clip_id = str(cfg.ssv2_first_id + offset + index)
    path = root / "ssv2" / SSV2_VIDEO_DIR / f"{clip_id}.webm"
    encode_video(path, rgb_to_yuv420p(frames), cfg.vpx_codec, cfg)
    placeholders = [f"{t.color} {t.shape}" for t in tracks]
    return {"kind": f"ssv2_{split}", "entry": {"id": clip_id, "label": _ssv2_label(template, placeholders),
                                               "template": template, "placeholders": placeholders}}


def _captions(tracks: list[Track], cfg: DemoConfig, rng: np.random.Generator) -> list[str]:
    """Paraphrased lower-case captions; consecutive captions use different templates."""
    starts = [int(rng.integers(0, 1000)) for _ in tracks]
    joiner0 = int(rng.integers(0, len(cfg.caption_joiners)))
    captions = []
    for k in range(cfg.captions_per_video):
        parts = []
        for track, start in zip(tracks, starts):
            options = cfg.templates[track.steps[0].action]
            text = options[(start + k) % len(options)].format(obj=f"{track.color} {track.shape}")
            parts.append(fix_articles(text).rstrip(".").lower())
        caption = parts[0]
        for part in parts[1:]:
            caption = cfg.caption_joiners[(joiner0 + k) % len(cfg.caption_joiners)].format(a=caption, b=part)
        captions.append(caption)
    return captions


def make_msrvtt_clip(cfg: DemoConfig, root: Path, index: int) -> dict:
    """Write one MSR-VTT-format clip of 1..msrvtt_max_events pretraining-style events.

    Returns:
        {"id": "video<index>", "captions": [...]}.
    """
    rng = item_rng(cfg, "msrvtt", index)
    tracks, t = [], 0.0
    for _ in range(int(rng.integers(1, cfg.msrvtt_max_events + 1))):
        length = rng.uniform(cfg.event_min_s, cfg.event_max_s)
        tracks.append(plan_track([Step(str(rng.choice(cfg.actions)), t, t + length)], cfg, rng))
        t += length
    frames = render_frames(tracks, frame_count(t, cfg), cfg, rng)
    video_id = f"video{index}"
    encode_video(root / "msrvtt" / "videos" / "all" / f"{video_id}.mp4", rgb_to_yuv420p(frames), "libx264", cfg)
    return {"kind": "msrvtt", "id": video_id, "captions": _captions(tracks, cfg, rng)}
