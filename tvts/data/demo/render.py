"""Rendering planned tracks to RGB frames: a textured background, drifting distractors, the actors.

Shapes are drawn from signed distances with 1-pixel anti-aliasing, in numpy, so the
frames are the same on every machine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.tracks import Track, fall_offset, rest_y, shatter_pieces, velocity
from tvts.data.demo.vocab import ROTATION_INVARIANT


@dataclass(frozen=True)
class Sprite:
    """A shape's per-frame state on the frames where it is visible."""

    shape: str
    rgb: tuple[int, int, int]
    frames: np.ndarray                  # (N,) frame indices
    state: np.ndarray                   # (N, 4): x, y, size, angle


def track_state(track: Track, times: np.ndarray, cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-time state (x, y, size, angle) of a track and whether it is visible.

    Args:
        track: the actor.
        times: (N,) seconds.
        cfg: speeds.
    Returns:
        (N, 4) states and an (N,) boolean visibility mask (False outside the track).
    """
    state = np.tile([track.x0, track.y0, track.size0, track.angle0], (len(times), 1))
    visible = (times >= track.t0) & (times < track.t1)
    for step in track.steps:
        elapsed = np.clip(times - step.t0, 0, step.t1 - step.t0)
        state += elapsed[:, None] * np.array(velocity(step.action, cfg))
        if step.action == "appear":
            visible &= times >= step.pop
        elif step.action in ("disappear", "shatter"):      # a broken shape is its pieces (`piece_states`)
            visible &= times < step.pop
        elif step.action == "fall":                        # a fall is its actor's only step
            state[:, 1] += fall_offset(times - step.pop, rest_y(track.size0, cfg) - track.y0, cfg)
    return state, visible


def piece_states(track: Track, times: np.ndarray, cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of a track that shatters: (pieces, N, 4) states and the (N,) times they are seen.

    A track without a shatter step has no pieces: (0, N, 4) and nothing visible.
    """
    step = next((s for s in track.steps if s.action == "shatter"), None)
    if step is None:
        return np.zeros((0, len(times), 4)), np.zeros(len(times), bool)
    (x, y, size, angle), = track_state(track, np.array([step.pop]), cfg)[0]
    states = shatter_pieces(x, y, size, angle, np.clip(times - step.pop, 0, None), cfg)
    return states, (times >= step.pop) & (times < step.t1)


def _track_sprites(track: Track, n_frames: int, cfg: DemoConfig) -> list[Sprite]:
    """The actor's sprite, and its pieces' after it breaks (narrow triangles: shards)."""
    frames = np.arange(n_frames)
    rgb = tuple(cfg.colors[track.color])
    state, visible = track_state(track, frames / cfg.fps, cfg)
    pieces, seen = piece_states(track, frames / cfg.fps, cfg)
    return [Sprite(track.shape, rgb, frames[visible], state[visible])] + \
        [Sprite("triangle", rgb, frames[seen], p[seen]) for p in pieces]


def _bounce(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold positions into [lo, hi] as if reflecting off the walls."""
    span = max(hi - lo, 1e-6)
    m = np.mod(p - lo, 2 * span)
    return lo + span - np.abs(m - span)


def _distractor_sprite(n_frames: int, cfg: DemoConfig, rng: np.random.Generator) -> Sprite:
    """A persistent, slowly drifting, never narrated shape from the actors' palette."""
    shape = str(rng.choice(cfg.shapes))
    rgb = tuple(cfg.colors[str(rng.choice(sorted(cfg.colors)))])
    size = rng.uniform(cfg.actor_size_min, cfg.actor_size_max)
    lo, hi = size / 2 + 1, cfg.size - size / 2 - 1
    heading = rng.uniform(0, 2 * math.pi)
    t = np.arange(n_frames) / cfg.fps
    xy = [_bounce(rng.uniform(lo, hi) + cfg.distractor_speed_px_s * f(heading) * t, lo, hi)
          for f in (math.cos, math.sin)]
    angle = 0.0 if shape in ROTATION_INVARIANT else rng.uniform(0, 2 * math.pi)
    state = np.stack([xy[0], xy[1], np.full(n_frames, size), np.full(n_frames, angle)], axis=1)
    return Sprite(shape, rgb, np.arange(n_frames), state)


def _convex_edges(vertices: list[tuple[float, float]]) -> tuple[tuple[float, float, float], ...]:
    """(nx, ny, c) per edge of a convex polygon: inside where n . p - c <= 0 for all."""
    cx, cy = np.mean(vertices, axis=0)
    edges = []
    for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1]):
        nx, ny = (by - ay), -(bx - ax)
        norm = math.hypot(nx, ny)
        nx, ny = nx / norm, ny / norm
        if nx * (cx - ax) + ny * (cy - ay) > 0:     # make the normal point outwards
            nx, ny = -nx, -ny
        edges.append((nx, ny, nx * ax + ny * ay))
    return tuple(edges)


# A narrow isosceles triangle, apex up, inscribed in the unit circle: unlike an
# equilateral one it only looks the same after a full turn, so sparse frame sampling
# cannot alias a clockwise turn into a counterclockwise one.
_TRIANGLE_EDGES = _convex_edges([(0.0, -1.0), (0.7, 0.714), (-0.7, 0.714)])


def _box(u: np.ndarray, v: np.ndarray, hu: float, hv: float) -> np.ndarray:
    return np.maximum(np.abs(u) - hu, np.abs(v) - hv)


def shape_distance(shape: str, px: np.ndarray, py: np.ndarray, size: float, angle: float) -> np.ndarray:
    """Approximate signed distance in pixels (negative inside) to a shape at the origin.

    Exact inside and on the edges, which is all the 1-pixel anti-aliasing needs.
    `size` is the diameter of the shape's circumscribed circle, so rotation never
    makes a shape leave the frame.
    """
    r = size / 2
    if shape == "circle":
        return np.hypot(px, py) - r
    if shape == "ring":
        return np.abs(np.hypot(px, py) - 0.75 * r) - 0.25 * r
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * px + s * py, -s * px + c * py     # points in the shape's own frame
    if shape == "square":
        return _box(u, v, r / math.sqrt(2), r / math.sqrt(2))
    if shape == "bar":
        return _box(u, v, 0.95 * r, 0.3 * r)
    if shape == "cross":
        return np.minimum(_box(u, v, 0.95 * r, 0.25 * r), _box(u, v, 0.25 * r, 0.95 * r))
    return np.max([nu * u + nv * v - c * r for nu, nv, c in _TRIANGLE_EDGES], axis=0)


def _paint(frame: np.ndarray, sprite: Sprite, state: np.ndarray, grid: np.ndarray) -> None:
    """Alpha-blend one anti-aliased shape into a float (H, W, 3) frame, in place."""
    x, y, size, angle = state
    r = size / 2 + 1
    x0, x1 = max(int(x - r), 0), min(int(x + r) + 2, frame.shape[1])
    y0, y1 = max(int(y - r), 0), min(int(y + r) + 2, frame.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    dist = shape_distance(sprite.shape, grid[None, x0:x1] - x, grid[y0:y1, None] - y, size, angle)
    alpha = np.clip(0.5 - dist, 0, 1)[..., None]
    patch = frame[y0:y1, x0:x1]
    patch += alpha * (np.asarray(sprite.rgb, np.float32) - patch)


def _background(cfg: DemoConfig, rng: np.random.Generator) -> np.ndarray:
    """A static grey with a smooth random texture, different per video."""
    grid = (np.arange(cfg.size) + 0.5) / cfg.size
    texture = np.zeros((cfg.size, cfg.size), np.float32)
    for _ in range(2):
        fx, fy = rng.uniform(0.5, 2.0, 2)
        phase = rng.uniform(0, 2 * math.pi)
        texture += np.sin(2 * math.pi * (fx * grid[None, :] + fy * grid[:, None]) + phase) / 2
    grey = cfg.background_grey + cfg.background_texture * texture
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def render_frames(tracks: list[Track], n_frames: int, cfg: DemoConfig,
                  rng: np.random.Generator, only: np.ndarray | None = None) -> np.ndarray:
    """Render a video: background, distractors, then the actors on top.

    Args:
        tracks: the narrated actors.
        n_frames: number of frames at cfg.fps.
        cfg: the demo config.
        rng: the item's generator (background, distractors, noise).
        only: render just these frame indices (without frame noise), e.g. the frames a model
            samples: the same pixels as those frames of the whole video, much faster.
    Returns:
        (n_frames, size, size, 3) uint8 RGB, or (len(only), size, size, 3).
    """
    background = _background(cfg, rng)
    sprites = [_distractor_sprite(n_frames, cfg, rng) for _ in range(cfg.n_distractors)]
    sprites += [s for t in tracks for s in _track_sprites(t, n_frames, cfg)]
    per_frame: list[list[tuple[Sprite, np.ndarray]]] = [[] for _ in range(n_frames)]
    for sprite in sprites:
        for f, state in zip(sprite.frames, sprite.state):
            per_frame[f].append((sprite, state))
    grid = np.arange(cfg.size, dtype=np.float32) + 0.5
    if only is not None:
        return np.stack([_to_uint8(_painted(background, per_frame[int(f)], grid)) for f in only])
    out = np.empty((n_frames, cfg.size, cfg.size, 3), np.uint8)
    for f, draws in enumerate(per_frame):
        frame = _painted(background, draws, grid)
        if cfg.frame_noise_std > 0:
            frame += rng.normal(0, cfg.frame_noise_std, frame.shape[:2] + (1,)).astype(np.float32)
        out[f] = _to_uint8(frame)
    return out


def _painted(background: np.ndarray, draws: list[tuple[Sprite, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """A float frame: the background with one frame's sprites painted on, in order."""
    frame = background.copy()
    for sprite, state in draws:
        _paint(frame, sprite, state, grid)
    return frame


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)
