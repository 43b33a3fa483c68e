"""What a plan is made of: an actor's steps, its track, a narrated event, and each action's motion.

Planning (`plans`), narration and rendering all read these, so they live apart from the
code that draws them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tvts.data.demo.config import DemoConfig


@dataclass(frozen=True)
class Step:
    """One action of an actor over [t0, t1); `pop` is when it appears/disappears, falls or breaks."""

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


def rest_y(size: float, cfg: DemoConfig) -> float:
    """The centre height at which a shape of diameter `size` rests on the floor (the frame's bottom edge)."""
    return cfg.size - size / 2 - 1


def fall_offset(elapsed: np.ndarray, drop: float, cfg: DemoConfig) -> np.ndarray:
    """How far below its start a falling shape is, `elapsed` seconds after it is let go.

    Free fall under `gravity_px_s2` onto the floor `drop` pixels below, then bounces that each
    keep `bounce` of the speed, then rest: the reverse (a shape that leaps off the floor higher
    and higher and hovers) is no event of the world.

    Args:
        elapsed: (N,) seconds since the drop (<= 0: not yet let go).
        drop: pixels from the start to the resting place (>= 0).
        cfg: gravity and restitution.
    Returns:
        (N,) offsets in pixels, in [0, drop].
    """
    g = cfg.gravity_px_s2
    t_hit = math.sqrt(2 * drop / g)
    out = np.full(elapsed.shape, float(drop))
    falling = elapsed < t_hit
    out[falling] = 0.5 * g * np.clip(elapsed[falling], 0, None) ** 2
    t, v = t_hit, cfg.bounce * g * t_hit
    while v * v / (2 * g) > 0.25:                  # bounces lower than a quarter pixel are rest
        tau = elapsed - t
        up = (tau >= 0) & (tau < 2 * v / g)
        out[up] = drop - (v * tau[up] - 0.5 * g * tau[up] ** 2)
        t, v = t + 2 * v / g, v * cfg.bounce
    return out


def shatter_pieces(x: float, y: float, size: float, angle: float, elapsed: np.ndarray,
                   cfg: DemoConfig) -> np.ndarray:
    """Where the pieces of a shape that breaks at (x, y) are, `elapsed` seconds after it breaks.

    The pieces fly apart at `shatter_speed_px_s` (spread evenly around the shape's angle, each
    thrown a little upwards), fall under gravity and stop where they land on the floor; a wall
    stops them too. Reversed, scattered pieces would leap up and fly together into a whole.

    Args:
        x, y, size, angle: the whole shape when it breaks.
        elapsed: (N,) seconds since the break (>= 0).
        cfg: the pieces' number, size and speed; gravity.
    Returns:
        (pieces, N, 4) states x, y, size, angle.
    """
    n, g, v = cfg.shatter_pieces, cfg.gravity_px_s2, cfg.shatter_speed_px_s
    piece = size * cfg.shatter_piece_frac
    lo, hi, floor = piece / 2 + 1, cfg.size - piece / 2 - 1, rest_y(piece, cfg)
    out = np.empty((n, len(elapsed), 4))
    for k in range(n):
        theta = angle + 2 * math.pi * (k + 0.5) / n
        vx, vy = v * math.cos(theta), -v * (0.5 + 0.5 * abs(math.sin(theta)))   # every piece starts upwards
        x0, y0 = x + size / 4 * math.cos(theta), min(y + size / 4 * math.sin(theta), floor)
        t_land = (-vy + math.sqrt(vy * vy + 2 * g * (floor - y0))) / g
        t = np.minimum(elapsed, t_land)
        out[k, :, 0] = np.clip(x0 + vx * t, lo, hi)
        out[k, :, 1] = np.minimum(y0 + vy * t + 0.5 * g * t * t, floor)
        out[k, :, 2] = piece
        out[k, :, 3] = theta
    return out
