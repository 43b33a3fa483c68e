"""What a plan is made of: an actor's steps, its track, a narrated event, and each action's motion.

Planning (`plans`), narration and rendering all read these, so they live apart from the
code that draws them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tvts.data.demo.config import DemoConfig


@dataclass(frozen=True)
class Step:
    """One action of an actor over [t0, t1); `pop` is when it appears/disappears."""

    action: str
    t0: float
    t1: float
    pop: float | None = None


@dataclass(frozen=True)
class Track:
    """One actor (a shape that exists only during its steps) and what it does."""

    shape: str
    color: str
    x0: float
    y0: float
    size0: float
    angle0: float                       # radians; + is clockwise on screen (y points down)
    steps: tuple[Step, ...]

    @property
    def t0(self) -> float:
        return self.steps[0].t0

    @property
    def t1(self) -> float:
        return self.steps[-1].t1


@dataclass(frozen=True)
class Event:
    """A narrated pretraining event: the track, its clean sentence and timed ASR words."""

    track: Track
    sentence: str
    words: tuple[tuple[str, float], ...]


def velocity(action: str, cfg: DemoConfig) -> tuple[float, float, float, float]:
    """(dx, dy, dsize, dangle) per second of an action."""
    v, g, w = cfg.move_speed_px_s, cfg.grow_px_s, math.radians(cfg.rotate_deg_s)
    return {"move_left": (-v, 0, 0, 0), "move_right": (v, 0, 0, 0), "move_up": (0, -v, 0, 0),
            "move_down": (0, v, 0, 0), "grow": (0, 0, g, 0), "shrink": (0, 0, -g, 0),
            "rotate_cw": (0, 0, 0, w), "rotate_ccw": (0, 0, 0, -w)}.get(action, (0, 0, 0, 0))
