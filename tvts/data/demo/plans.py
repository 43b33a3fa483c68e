"""The plan of an item: its actors, their actions and times, and the narration of each event.

Why events are built this way (docs/demo-corpus.md, "Text leakage"): the sort pretext task
must not be solvable from the transcripts alone. Each event's actor exists only during
its own event (appear: absent, then pops in mid-event; disappear: present, then vanishes
mid-event), and an event's action is drawn uniformly from those the last
`distinct_recent` events did not do, a rule symmetric in time: the text of a window's
events says nothing about their order. Narration contains no order words.

Every item draws from its own generator, seeded from (seed, subset name, index)
(`item_rng`), so what an item holds does not depend on which worker makes it, or when.
"""
from __future__ import annotations

import math
import zlib
from typing import Iterable

import numpy as np

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.narration import asr_words, describe, time_words
from tvts.data.demo.tracks import Event, Step, Track, rest_y, velocity
from tvts.data.demo.vocab import ROTATION_INVARIANT


def item_rng(cfg: DemoConfig, subset: str, index: int) -> np.random.Generator:
    """The generator of one item, from (seed, subset name, index): independent of workers."""
    return np.random.default_rng([cfg.seed, zlib.crc32(subset.encode("utf-8")), index])


def frame_count(duration: float, cfg: DemoConfig) -> int:
    """The frames of `duration` seconds at `cfg.fps`; at least one."""
    return max(int(round(duration * cfg.fps)), 1)


def _offsets(steps: Iterable[Step], cfg: DemoConfig) -> np.ndarray:
    """Cumulative (dx, dy, dsize) at the start and at the end of every step."""
    rows = [np.zeros(3)]
    for step in steps:
        rows.append(rows[-1] + np.array(velocity(step.action, cfg)[:3]) * (step.t1 - step.t0))
    return np.stack(rows)


def _draw_shape(actions: Iterable[str], cfg: DemoConfig, rng: np.random.Generator) -> str:
    """A shape on which every action is visible (no rotating circles)."""
    rotates = any(a.startswith("rotate") for a in actions)
    allowed = [s for s in cfg.shapes if not (rotates and s in ROTATION_INVARIANT)]
    return str(rng.choice(allowed))


def _with_pops(steps: list[Step], cfg: DemoConfig, rng: np.random.Generator) -> tuple[Step, ...]:
    out = []
    for s in steps:
        pop = None
        if s.action in ("appear", "disappear", "shatter"):
            pop = s.t0 + (s.t1 - s.t0) * rng.uniform(cfg.pop_min_frac, cfg.pop_max_frac)
        elif s.action == "fall":
            pop = s.t0 + (s.t1 - s.t0) * rng.uniform(cfg.fall_min_frac, cfg.fall_max_frac)
        out.append(Step(s.action, s.t0, s.t1, pop))
    return tuple(out)


def _y_range(steps: list[Step], size0: float, radius: float, off: np.ndarray, cfg: DemoConfig) -> tuple[float, float]:
    """The start heights that keep a track in frame; a fall also starts `fall_min_drop_px` above the floor."""
    if steps[0].action == "fall":          # a fall is its actor's only step (DemoConfig.check)
        return radius, rest_y(size0, cfg) - cfg.fall_min_drop_px
    return radius - off[:, 1].min(), cfg.size - radius - off[:, 1].max()


def plan_track(steps: list[Step], cfg: DemoConfig, rng: np.random.Generator) -> Track:
    """Draw a fresh actor for `steps` and place it so the whole track stays in frame.

    Sizes and positions are uniform over what fits, so an action and its reverse have
    the same distribution of single frames (no static cue to direction or order).

    Args:
        steps: consecutive actions (pop times are drawn here).
        cfg: the demo config.
        rng: the item's generator.
    Returns:
        The placed track.
    """
    actions = [s.action for s in steps]
    shape = _draw_shape(actions, cfg, rng)
    color = str(rng.choice(sorted(cfg.colors)))
    off = _offsets(steps, cfg)
    size0 = rng.uniform(cfg.actor_size_min, cfg.actor_size_max) - off[:, 2].min()
    radius = (size0 + off[:, 2].max()) / 2 + 1
    xy = [rng.uniform(radius - off[:, 0].min(), cfg.size - radius - off[:, 0].max()),
          rng.uniform(*_y_range(steps, float(size0), radius, off, cfg))]
    angle0 = 0.0 if shape in ROTATION_INVARIANT else rng.uniform(0, 2 * math.pi)
    return Track(shape, color, xy[0], xy[1], float(size0), angle0, _with_pops(steps, cfg, rng))


def draw_action(recent: list[str], cfg: DemoConfig, rng: np.random.Generator) -> str:
    """An action uniformly from those not among the last `distinct_recent` events' actions."""
    avoid = set(recent[-cfg.distinct_recent:]) if cfg.distinct_recent else set()
    return str(rng.choice([a for a in cfg.actions if a not in avoid]))


def plan_event(t0: float, t1: float, cfg: DemoConfig, rng: np.random.Generator,
               recent: list[str] | None = None) -> Event:
    """One narrated event over [t0, t1): a fresh actor, an action, its narration."""
    action = draw_action(recent or [], cfg, rng)
    track = plan_track([Step(action, t0, t1)], cfg, rng)
    sentence = describe(track, cfg, rng)
    return Event(track, sentence, time_words(asr_words(sentence, cfg, rng), t0, t1, cfg, rng))


def plan_events(duration: float, cfg: DemoConfig, rng: np.random.Generator) -> list[Event]:
    """The i.i.d. events of a pretraining video, back to back with short silent gaps.

    Args:
        duration: video length in seconds.
        cfg: the demo config.
        rng: the item's generator.
    Returns:
        Events in time order; each lies inside [0, duration].
    """
    events, t = [], rng.uniform(cfg.gap_min_s, cfg.gap_max_s)
    while True:
        length = rng.uniform(cfg.event_min_s, cfg.event_max_s)
        if t + length > duration:
            return events
        events.append(plan_event(t, t + length, cfg, rng, [e.track.steps[0].action for e in events]))
        t += length + rng.uniform(cfg.gap_min_s, cfg.gap_max_s)


def plan_ssv2_clip(steps: list[str], cfg: DemoConfig, rng: np.random.Generator) -> tuple[list[Track], float]:
    """The tracks and duration of one SSV2-format clip of a class's `steps` (see `ssv2_layout`)."""
    if cfg.ssv2_layout == "events":
        return plan_sequence(steps, cfg, rng)
    cuts = [0.0]
    for _ in steps[1:]:
        cuts.append(cfg.ssv2_clip_s * rng.uniform(cfg.ssv2_split_min_frac, cfg.ssv2_split_max_frac))
    cuts = sorted(cuts) + [cfg.ssv2_clip_s]
    track = plan_track([Step(a, cuts[k], cuts[k + 1]) for k, a in enumerate(steps)], cfg, rng)
    return [track], cfg.ssv2_clip_s


def plan_sequence(actions: list[str], cfg: DemoConfig, rng: np.random.Generator) -> tuple[list[Track], float]:
    """Consecutive events, one fresh actor each, timed like pretraining events (lengths, gaps).

    Returns:
        The tracks in time order and the duration, which ends with a gap as it starts with one.
    """
    tracks, t = [], rng.uniform(cfg.gap_min_s, cfg.gap_max_s)
    for action in actions:
        length = rng.uniform(cfg.event_min_s, cfg.event_max_s)
        tracks.append(plan_track([Step(action, t, t + length)], cfg, rng))
        t += length + rng.uniform(cfg.gap_min_s, cfg.gap_max_s)
    return tracks, t
