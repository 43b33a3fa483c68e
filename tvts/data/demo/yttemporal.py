"""One YT-Temporal-format pretraining video: its events rendered and encoded, its MERLOT annotation.

A few items are broken on purpose (`BAD_KINDS`), so that every demo run exercises the
pipeline's reject paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.encode import encode_video, rgb_to_yuv420p
from tvts.data.demo.layout import YT_SUBSET
from tvts.data.demo.plans import frame_count, item_rng, plan_events
from tvts.data.demo.render import render_frames
from tvts.data.demo.tracks import Event
from tvts.io import dumps

BAD_KINDS = ("truncated", "missing_annotation", "empty_subtitles", "garbled")


def _annotation(video_id: str, events: list[Event], duration: float, cfg: DemoConfig) -> dict:
    """The MERLOT-format annotation of a video."""
    return {
        "subtitles": [{"word": w, "time": t} for e in events for w, t in e.words],
        "denoised": [{"cleanasr": e.sentence, "noisyasr": " ".join(w for w, _ in e.words)} for e in events],
        "info": {"id": video_id, "title": f"Shapes at play {video_id}", "duration": duration,
                 "fps": cfg.fps, "width": cfg.size, "height": cfg.size},
    }


def _garble(annotation: dict, rng: np.random.Generator) -> None:
    """Replace every ASR word with non-Latin junk (a wrong-language or broken track)."""
    def junk() -> str:
        base = int(rng.choice([0x4E00, 0x0410]))      # CJK or Cyrillic
        return "".join(chr(base + int(c)) for c in rng.integers(0, 0x40, int(rng.integers(2, 6))))

    for word in annotation["subtitles"]:
        word["word"] = junk()
    for seg in annotation["denoised"]:
        seg["noisyasr"] = " ".join(junk() for _ in seg["noisyasr"].split())


def _event_record(event: Event) -> dict:
    track, step = event.track, event.track.steps[0]
    return {"t0": round(step.t0, 3), "t1": round(step.t1, 3), "action": step.action,
            "color": track.color, "shape": track.shape,
            "pop": None if step.pop is None else round(step.pop, 3), "sentence": event.sentence}


def make_yt_video(cfg: DemoConfig, root: Path, index: int, bad: str | None = None) -> dict:
    """Write one YT-Temporal-format video and annotation (possibly a broken one).

    Args:
        cfg: the demo config.
        root: the corpus root (the `yttemporal/` folder is below it).
        index: item index within its subset.
        bad: one of BAD_KINDS, or None for a normal item.
    Returns:
        The TSV row and ground-truth events of the item.
    """
    rng = item_rng(cfg, "yttemporal_bad" if bad else "yttemporal", index)
    video_id = f"demo_bad_{bad}" if bad else f"demo_{index:06d}"
    n_frames = frame_count(rng.uniform(cfg.video_min_s, cfg.video_max_s), cfg)
    duration = n_frames / cfg.fps
    events = plan_events(duration, cfg, rng)
    yuv = rgb_to_yuv420p(render_frames([e.track for e in events], n_frames, cfg, rng))
    subset = root / "yttemporal" / YT_SUBSET
    mp4 = subset / "data" / f"{video_id}.mp4"
    encode_video(mp4, yuv, "libx264", cfg)
    annotation = _annotation(video_id, events, duration, cfg)
    _break(bad, mp4, annotation, rng)
    if bad != "missing_annotation":
        (subset / "annotations" / f"{video_id}.json").write_text(dumps(annotation, indent=None) + "\n", "utf-8")
    return {"kind": "yttemporal", "id": video_id, "name": f"{YT_SUBSET}/data/{video_id}.mp4",
            "duration": duration, "bad": bad, "events": [_event_record(e) for e in events]}


def _break(bad: str | None, mp4: Path, annotation: dict, rng: np.random.Generator) -> None:
    """Apply one deliberate defect so the pipeline's reject paths get exercised."""
    if bad == "truncated":
        data = mp4.read_bytes()
        mp4.write_bytes(data[: len(data) // 2])
    elif bad == "empty_subtitles":
        annotation["subtitles"] = []
    elif bad == "garbled":
        _garble(annotation, rng)
