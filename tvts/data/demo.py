"""Deterministic synthetic corpus in the exact real formats (YT-Temporal, SSV2, MSR-VTT).

The demo world: coloured shapes on a mildly textured grey background. A pretraining
video is a sequence of *events*; in each event one freshly drawn shape (the actor)
performs one action while a narrator describes it, and a few persistent un-narrated
distractor shapes drift slowly so that appearance alone never identifies the actor.

Why events are built this way (DEMO-NOTES.md, "Text leakage"): the sort pretext task
must not be solvable from the transcripts alone. Each event's actor exists only during
its own event (appear: absent, then pops in mid-event; disappear: present, then vanishes
mid-event), and an event's action is drawn uniformly from those the last
`distinct_recent` events did not do, a rule symmetric in time: the text of a window's
events says nothing about their order. Narration contains no order words.

Why the narrator names the actor in only half the sentences (`p_name_actor`): if every
sentence said "the red square", the sort task would be solvable from single frames (find
the red square), i.e. from appearance alone, and the contrastive term would pull the
video CLS toward colours and shapes. A sentence that says "the shape moves to the left"
can be placed in time only from the motion, which takes several frames. With no actor
named at all (corpus v2a), the tiny CPU model did not leave the sort loss's ln 4 plateau
within the science budget (README, "The demo corpus"); naming it in half the sentences
keeps a way in while half the transcripts still need the motion.

The SSV2-format set reuses the same renderer, speeds, sizes, event lengths and gaps
(DEMO-NOTES, "Probe and pretraining must share speeds"). With the default layout
"events", a clip is two pretraining-like events by two actors and its class is the
ordered pair of actions; every class has its time reverse among the classes, so neither
single frames nor the unordered set of frames separates them.

Everything is seeded per item from (seed, subset name, index) and encoded with
single-threaded bit-exact encoders after a numpy RGB->YUV conversion, so the bytes do
not depend on the number of worker processes.

Layout written by `generate_demo` (the dataset readers rely on it):
    yttemporal/videos.tsv, yttemporal/subset_0/{data/<id>.mp4, annotations/<id>.json}
    yttemporal/demo_events.jsonl          ground-truth events (diagnostics only)
    ssv2/something-something-v2-labels.json, ssv2/{train,validation}.json,
    ssv2/20bn-something-something-v2/<id>.webm
    msrvtt/annotation/MSR_VTT.json, msrvtt/videos/all/<id>.mp4,
    msrvtt/high-quality/structured-symlinks/{train,val}_list_jsfusion.txt
    manifest.json                         config, counts and encoder versions
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import platform
import re
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tvts.config import require
from tvts.io import atomic_dir, dumps

SHAPES = ("circle", "ring", "square", "triangle", "bar", "cross")
ROTATION_INVARIANT = frozenset({"circle", "ring"})  # rotating these shows nothing
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink",
           "rotate_cw", "rotate_ccw", "appear", "disappear")
BAD_KINDS = ("truncated", "missing_annotation", "empty_subtitles", "garbled")
VPX_CODECS = ("libvpx", "libvpx-vp9")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")

YT_SUBSET = "subset_0"
SSV2_VIDEO_DIR = "20bn-something-something-v2"
MSRVTT_SPLIT_DIR = "high-quality/structured-symlinks"


def _default_colors() -> dict[str, list]:
    return {"red": [220, 50, 50], "green": [40, 180, 70], "blue": [50, 90, 230],
            "yellow": [235, 215, 40], "purple": [165, 70, 205]}


def _default_templates() -> dict[str, list]:
    # No order words ("first", "then", "again", "finally"): see the module docstring.
    return {
        "move_left": ["The {obj} moves to the left.", "The {obj} slides left.", "The {obj} is going left."],
        "move_right": ["The {obj} moves to the right.", "The {obj} slides right.", "The {obj} is going right."],
        "move_up": ["The {obj} moves up.", "The {obj} rises.", "The {obj} is going up."],
        "move_down": ["The {obj} moves down.", "The {obj} sinks.", "The {obj} is going down."],
        "grow": ["The {obj} grows.", "The {obj} gets bigger.", "The {obj} is getting larger."],
        "shrink": ["The {obj} shrinks.", "The {obj} gets smaller.", "The {obj} is getting tiny."],
        "rotate_cw": ["The {obj} turns clockwise.", "The {obj} spins clockwise.", "The {obj} rotates clockwise."],
        "rotate_ccw": ["The {obj} turns counterclockwise.", "The {obj} spins counterclockwise.",
                       "The {obj} rotates anticlockwise."],
        "appear": ["A {obj} appears.", "Here comes a {obj}.", "A {obj} pops into view."],
        "disappear": ["The {obj} disappears.", "The {obj} vanishes.", "The {obj} goes away."],
    }


def _default_mishearings() -> dict[str, list]:
    return {"red": ["read", "bread"], "green": ["grin"], "blue": ["blew"], "yellow": ["hello"],
            "purple": ["people"], "square": ["scare", "where"], "circle": ["circus"],
            "triangle": ["tangle"], "bar": ["car", "far"], "left": ["lift", "lest"],
            "right": ["write", "bright"], "up": ["op"], "down": ["town"], "bigger": ["digger"],
            "smaller": ["taller"], "grows": ["rose"], "shrinks": ["drinks"], "spins": ["pins"],
            "clockwise": ["clock"], "vanishes": ["varnishes"], "rises": ["prizes"], "sinks": ["thinks"]}


SSV2_PHRASES = {"move_left": "[something] moving left", "move_right": "[something] moving right",
                "grow": "[something] growing", "shrink": "[something] shrinking"}


def ssv2_order_template(first: str, second: str) -> str:
    """The SSV2-style template of the class "`first`, then `second`" (two events, two actors)."""
    text = f"{SSV2_PHRASES[first]}, then {SSV2_PHRASES[second]}"
    return text.replace("[something]", "[Something]", 1)


def _default_ssv2_classes() -> dict[str, list]:
    # layout "events": every ordered pair of two different actions from SSV2_PHRASES, each
    # action its own event by its own actor (12 classes). Each class has its time reverse
    # (A then B / B then A) among the classes: the same actors, actions and frames, only
    # in the other order, so neither one frame nor the unordered set of frames separates
    # them; telling the pair needs motion (>= 2 frames per event) and the order needs
    # both events (README, "The demo corpus").
    return {ssv2_order_template(a, b): [a, b] for a in SSV2_PHRASES for b in SSV2_PHRASES if a != b}


SSV2_LAYOUTS = ("events", "one_actor")


@dataclass(frozen=True)
class DemoConfig:
    """Every size, speed, probability and the event grammar of the demo corpus.

    Defaults are the committed demo corpus. Lengths are in seconds, sizes in pixels.
    """

    seed: int = 0
    size: int = 96                      # square frame side (multiple of 8)
    fps: int = 8
    # YT-Temporal-format pretraining videos
    n_videos: int = 200
    video_min_s: float = 30.0
    video_max_s: float = 60.0
    event_min_s: float = 3.0            # one narrated event lasts event_min_s..event_max_s
    event_max_s: float = 6.0
    gap_min_s: float = 0.0              # silence between consecutive events
    gap_max_s: float = 1.0
    bad_items: bool = True              # add the 4 broken items of BAD_KINDS
    # the world
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "bar")
    colors: dict[str, list] = field(default_factory=_default_colors)   # name -> [r, g, b]
    actions: tuple[str, ...] = ACTIONS  # drawn uniformly per event
    actor_size_min: float = 24.0        # diameter of the shape's circumscribed circle; large enough
    actor_size_max: float = 32.0        # that tube masking (0.75) leaves some of it visible (v2c)
    move_speed_px_s: float = 10.0       # shared by pretraining, SSV2 and MSR-VTT
    grow_px_s: float = 3.0              # diameter change per second
    rotate_deg_s: float = 30.0          # slow enough that a square (90-degree symmetry)
                                        # does not alias when frames are ~1.4 s apart
    pop_min_frac: float = 0.3           # appear/disappear moment, as a fraction of its step
    pop_max_frac: float = 0.7
    n_distractors: int = 2              # persistent, never narrated
    distractor_speed_px_s: float = 1.5
    background_grey: int = 110
    background_texture: float = 6.0     # amplitude of a smooth static texture (grey levels)
    frame_noise_std: float = 0.0        # per-frame pixel noise (costs a lot of bytes)
    # narration and ASR noise
    p_name_actor: float = 0.5           # per sentence: name the actor ("the red square"), else a
    generic_nouns: tuple[str, ...] = ("shape", "thing", "object")   # generic noun ("the shape")
    distinct_recent: int = 3            # an event's action differs from the last N events' (0: i.i.d.)
    templates: dict[str, list] = field(default_factory=_default_templates)  # action -> sentences with {obj}
    words_per_s: float = 3.0            # speaking rate of the ASR words (a sentence takes ~2 s of its event)
    p_filler: float = 0.08              # per word: insert a filler before it
    fillers: tuple[str, ...] = ("um", "uh", "so", "okay", "like", "yeah", "well")
    p_drop: float = 0.05                # per word: ASR misses it
    p_substitute: float = 0.15          # per word with an entry in mishearings
    mishearings: dict[str, list] = field(default_factory=_default_mishearings)
    p_mojibake: float = 0.02            # per event: add a UTF-8-as-cp1252 word (ftfy fixes it)
    mojibake_words: tuple[str, ...] = ("it\u2019s", "that\u2019s", "let\u2019s", "don\u2019t")
    p_html: float = 0.02                # per event: add an HTML-entity token (the cleaner drops it)
    html_tokens: tuple[str, ...] = ("&gt;", "&amp;", "&#39;", "&quot;")
    # encoders
    h264_crf: int = 30
    h264_preset: str = "medium"
    vpx_codec: str = "libvpx-vp9"       # or "libvpx" (VP8)
    vpx_crf: int = 34
    # SSV2-format set
    # "events": each of a class's actions is one pretraining-like event (own actor, event_min_s..
    # event_max_s, gaps gap_min_s..gap_max_s), so a clip spans the time scale of a pretraining
    # window. "one_actor" (corpus v1): one actor does the steps within ssv2_clip_s.
    ssv2_layout: str = "events"
    ssv2_classes: dict[str, list] = field(default_factory=_default_ssv2_classes)  # template -> actions
    ssv2_train_per_class: int = 24
    ssv2_val_per_class: int = 8
    ssv2_clip_s: float = 4.0            # one_actor only
    ssv2_split_min_frac: float = 0.4    # one_actor only: two-step clips switch step at this..max fraction
    ssv2_split_max_frac: float = 0.6
    ssv2_first_id: int = 10000
    # MSR-VTT-format set
    msrvtt_train: int = 90
    msrvtt_test: int = 30
    msrvtt_max_events: int = 2          # 1..max events per clip, each event_min_s..event_max_s
    captions_per_video: int = 3
    caption_joiners: tuple[str, ...] = ("{a} and then {b}", "{a}, then {b}", "{a} and after that {b}")

    def check(self, where: str) -> None:
        """Raise ConfigError naming the first out-of-range field."""
        self._check_sizes(where)
        self._check_world(where)
        self._check_text(where)
        self._check_sets(where)

    def _check_sizes(self, where: str) -> None:
        require(self.seed >= 0, where, "seed", "must be >= 0")
        require(self.size >= 32 and self.size % 8 == 0, where, "size", "must be a multiple of 8, >= 32")
        require(1 <= self.fps <= 60, where, "fps", "must be in [1, 60]")
        require(self.n_videos >= 0, where, "n_videos", "must be >= 0")
        require(0 < self.event_min_s <= self.event_max_s, where, "event_min_s", "need 0 < event_min_s <= event_max_s")
        require(0 <= self.gap_min_s <= self.gap_max_s, where, "gap_min_s", "need 0 <= gap_min_s <= gap_max_s")
        require(self.event_max_s + self.gap_max_s <= self.video_min_s <= self.video_max_s, where,
                 "video_min_s", "need event_max_s + gap_max_s <= video_min_s <= video_max_s")
        require(0 < self.actor_size_min <= self.actor_size_max, where, "actor_size_min",
                 "need 0 < actor_size_min <= actor_size_max")
        longest = self.event_max_s if self.ssv2_layout == "events" else max(self.event_max_s, self.ssv2_clip_s)
        require(self.move_speed_px_s * longest + self.actor_size_max + 2 <= self.size, where,
                 "move_speed_px_s", "the longest move must fit in the frame")
        require(self.actor_size_max + self.grow_px_s * longest + 2 <= self.size, where,
                 "grow_px_s", "the largest grown shape must fit in the frame")

    def _check_world(self, where: str) -> None:
        require(len(self.shapes) > 0 and set(self.shapes) <= set(SHAPES), where, "shapes", f"must be from {SHAPES}")
        require(len(self.actions) > 0 and set(self.actions) <= set(ACTIONS), where, "actions",
                 f"must be from {ACTIONS}")
        rotates = any(a.startswith("rotate") for a in self.actions)
        require(not rotates or bool(set(self.shapes) - ROTATION_INVARIANT), where, "shapes",
                 "rotate actions need a shape that is not a circle or ring")
        require(len(self.colors) > 0 and all(_is_rgb(v) for v in self.colors.values()), where,
                 "colors", "must map names to [r, g, b] in 0..255")
        require(0 < self.pop_min_frac <= self.pop_max_frac < 1, where, "pop_min_frac",
                 "need 0 < pop_min_frac <= pop_max_frac < 1")
        for key in ("n_distractors", "distractor_speed_px_s", "background_texture", "frame_noise_std"):
            require(getattr(self, key) >= 0, where, key, "must be >= 0")
        require(0 <= self.background_grey <= 255, where, "background_grey", "must be in [0, 255]")
        require(0 <= self.h264_crf <= 51, where, "h264_crf", "must be in [0, 51]")
        require(self.h264_preset in X264_PRESETS, where, "h264_preset", f"must be one of {X264_PRESETS}")
        require(self.vpx_codec in VPX_CODECS, where, "vpx_codec", f"must be one of {VPX_CODECS}")
        require(0 <= self.vpx_crf <= 63, where, "vpx_crf", "must be in [0, 63]")

    def _check_text(self, where: str) -> None:
        require(len(self.generic_nouns) > 0, where, "generic_nouns", "must be non-empty")
        require(0 <= self.distinct_recent < len(self.actions), where, "distinct_recent",
                 "must be in [0, number of actions)")
        for key in ("p_name_actor", "p_filler", "p_drop", "p_substitute", "p_mojibake", "p_html"):
            require(0 <= getattr(self, key) <= 1, where, key, "must be in [0, 1]")
        require(all(a in self.templates for a in self.actions), where, "templates", "need an entry per action")
        require(all(_is_str_list(v) and all("{obj}" in t for t in v) for v in self.templates.values()),
                 where, "templates", "each must be a non-empty list of sentences containing {obj}")
        require(all(_is_str_list(v) for v in self.mishearings.values()), where, "mishearings",
                 "must map words to non-empty lists of words")
        require(len(self.fillers) > 0 and len(self.mojibake_words) > 0 and len(self.html_tokens) > 0,
                 where, "fillers", "fillers, mojibake_words and html_tokens must be non-empty")
        require(all(t.startswith("&") or t.endswith(";") for t in self.html_tokens), where,
                 "html_tokens", "must start with & or end with ;")
        require(self.words_per_s > 0, where, "words_per_s", "must be > 0")

    def _check_sets(self, where: str) -> None:
        require(self.ssv2_layout in SSV2_LAYOUTS, where, "ssv2_layout", f"must be one of {SSV2_LAYOUTS}")
        names = [ssv2_class_name(t) for t in self.ssv2_classes]
        require(len(set(names)) == len(names) >= 2, where, "ssv2_classes", "need >= 2 distinct classes")
        for template, steps in self.ssv2_classes.items():
            require("[something]" in template.lower(), where, "ssv2_classes", f"{template!r} lacks [something]")
            if self.ssv2_layout == "events":
                require(_is_str_list(steps) and set(steps) <= set(ACTIONS), where, "ssv2_classes",
                         f"{template!r}: must be a list of actions")
                require(template.lower().count("[something]") == len(steps), where, "ssv2_classes",
                         f"{template!r}: needs one [something] per event")
            else:
                require(_valid_steps(steps), where, "ssv2_classes",
                         f"{template!r}: steps must be actions; appear only first, disappear only last")
        require(self.ssv2_train_per_class >= 0 and self.ssv2_val_per_class >= 0, where,
                 "ssv2_train_per_class", "must be >= 0")
        require(self.ssv2_clip_s > 0, where, "ssv2_clip_s", "must be > 0")
        require(0 < self.ssv2_split_min_frac <= self.ssv2_split_max_frac < 1, where,
                 "ssv2_split_min_frac", "need 0 < min <= max < 1")
        require(self.msrvtt_train >= 0 and self.msrvtt_test >= 0, where, "msrvtt_train", "must be >= 0")
        require(self.msrvtt_max_events >= 1, where, "msrvtt_max_events", "must be >= 1")
        require(self.captions_per_video >= 1, where, "captions_per_video", "must be >= 1")
        require(len(self.caption_joiners) > 0 and all("{a}" in j and "{b}" in j for j in self.caption_joiners),
                 where, "caption_joiners", "each must contain {a} and {b}")


def _is_rgb(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in value))


def _is_str_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, str) for v in value)


def _valid_steps(steps: Any) -> bool:
    if not _is_str_list(steps) or not set(steps) <= set(ACTIONS):
        return False
    return "appear" not in steps[1:] and "disappear" not in steps[:-1]


def ssv2_class_name(template: str) -> str:
    """The SSV2 class name of a template: the template with `[` and `]` removed."""
    return template.replace("[", "").replace("]", "")


# ----------------------------------------------------------------------------- plans


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


def _velocity(action: str, cfg: DemoConfig) -> tuple[float, float, float, float]:
    """(dx, dy, dsize, dangle) per second of an action."""
    v, g, w = cfg.move_speed_px_s, cfg.grow_px_s, math.radians(cfg.rotate_deg_s)
    return {"move_left": (-v, 0, 0, 0), "move_right": (v, 0, 0, 0), "move_up": (0, -v, 0, 0),
            "move_down": (0, v, 0, 0), "grow": (0, 0, g, 0), "shrink": (0, 0, -g, 0),
            "rotate_cw": (0, 0, 0, w), "rotate_ccw": (0, 0, 0, -w)}.get(action, (0, 0, 0, 0))


def _offsets(steps: Iterable[Step], cfg: DemoConfig) -> np.ndarray:
    """Cumulative (dx, dy, dsize) at the start and at the end of every step."""
    rows = [np.zeros(3)]
    for step in steps:
        rows.append(rows[-1] + np.array(_velocity(step.action, cfg)[:3]) * (step.t1 - step.t0))
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
        if s.action in ("appear", "disappear"):
            pop = s.t0 + (s.t1 - s.t0) * rng.uniform(cfg.pop_min_frac, cfg.pop_max_frac)
        out.append(Step(s.action, s.t0, s.t1, pop))
    return tuple(out)


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
    xy = [rng.uniform(radius - off[:, k].min(), cfg.size - radius - off[:, k].max()) for k in (0, 1)]
    angle0 = 0.0 if shape in ROTATION_INVARIANT else rng.uniform(0, 2 * math.pi)
    return Track(shape, color, xy[0], xy[1], float(size0), angle0, _with_pops(steps, cfg, rng))


def _fix_articles(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def describe(track: Track, cfg: DemoConfig, rng: np.random.Generator) -> str:
    """A clean narration sentence for a one-step track, from the action's templates.

    The actor is named by its colour and shape with probability `p_name_actor`, else by a
    generic noun: a narrator who says *what happens* rather than *what it looks like*.
    """
    template = str(rng.choice(cfg.templates[track.steps[0].action]))
    named = rng.random() < cfg.p_name_actor
    obj = f"{track.color} {track.shape}" if named else str(rng.choice(cfg.generic_nouns))
    return _fix_articles(template.format(obj=obj))


def asr_words(sentence: str, cfg: DemoConfig, rng: np.random.Generator) -> list[str]:
    """YouTube-ASR-like words for a sentence: lower case, no punctuation, noisy.

    Args:
        sentence: the clean sentence.
        cfg: noise probabilities and vocabularies.
        rng: the item's generator.
    Returns:
        Non-empty list of words with fillers, drops, mishearings and rare junk tokens.
    """
    clean = re.findall(r"[a-z0-9']+", sentence.lower())
    words: list[str] = []
    for k, word in enumerate(clean):
        if rng.random() < cfg.p_filler:
            words.append(str(rng.choice(cfg.fillers)))
        if rng.random() < cfg.p_drop and (words or k < len(clean) - 1):
            continue
        if word in cfg.mishearings and rng.random() < cfg.p_substitute:
            word = str(rng.choice(cfg.mishearings[word]))
        words.append(word)
    if rng.random() < cfg.p_mojibake:
        # A right single quote stored as UTF-8 and read back as cp1252: "itâ€™s".
        junk = str(rng.choice(cfg.mojibake_words)).encode("utf-8").decode("cp1252", errors="replace")
        words.insert(int(rng.integers(0, len(words) + 1)), junk)
    if rng.random() < cfg.p_html:
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cfg.html_tokens)))
    return words


def time_words(words: list[str], t0: float, t1: float, cfg: DemoConfig,
               rng: np.random.Generator) -> tuple[tuple[str, float], ...]:
    """Spread words at the speaking rate over a random stretch inside [t0, t1).

    Returns:
        (word, start time) pairs, non-decreasing, every time within [t0, t1].
    """
    speech = min(len(words) / cfg.words_per_s, 0.9 * (t1 - t0))
    start = rng.uniform(t0, t1 - speech)
    spacing = speech / len(words)
    times = start + spacing * (np.arange(len(words)) + rng.uniform(0, 0.3, len(words)))
    return tuple((w, min(max(round(float(t), 3), t0), t1)) for w, t in zip(words, times))


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


# ----------------------------------------------------------------------------- rendering


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
        state += elapsed[:, None] * np.array(_velocity(step.action, cfg))
        if step.action == "appear":
            visible &= times >= step.pop
        elif step.action == "disappear":
            visible &= times < step.pop
    return state, visible


def _track_sprite(track: Track, n_frames: int, cfg: DemoConfig) -> Sprite:
    frames = np.arange(n_frames)
    state, visible = track_state(track, frames / cfg.fps, cfg)
    return Sprite(track.shape, tuple(cfg.colors[track.color]), frames[visible], state[visible])


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
                  rng: np.random.Generator) -> np.ndarray:
    """Render a video: background, distractors, then the actors on top.

    Args:
        tracks: the narrated actors.
        n_frames: number of frames at cfg.fps.
        cfg: the demo config.
        rng: the item's generator (background, distractors, noise).
    Returns:
        (n_frames, size, size, 3) uint8 RGB.
    """
    background = _background(cfg, rng)
    sprites = [_distractor_sprite(n_frames, cfg, rng) for _ in range(cfg.n_distractors)]
    sprites += [_track_sprite(t, n_frames, cfg) for t in tracks]
    per_frame: list[list[tuple[Sprite, np.ndarray]]] = [[] for _ in range(n_frames)]
    for sprite in sprites:
        for f, state in zip(sprite.frames, sprite.state):
            per_frame[f].append((sprite, state))
    grid = np.arange(cfg.size, dtype=np.float32) + 0.5
    out = np.empty((n_frames, cfg.size, cfg.size, 3), np.uint8)
    for f, draws in enumerate(per_frame):
        frame = background.copy()
        for sprite, state in draws:
            _paint(frame, sprite, state, grid)
        if cfg.frame_noise_std > 0:
            frame += rng.normal(0, cfg.frame_noise_std, frame.shape[:2] + (1,)).astype(np.float32)
        out[f] = np.clip(np.rint(frame), 0, 255)
    return out


# ----------------------------------------------------------------------------- encoding


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0, packed as PyAV's yuv420p arrays.

    Done in numpy rather than swscale so the bytes do not depend on CPU-specific
    SIMD code paths.

    Args:
        frames: (T, H, W, 3) uint8 RGB, H and W multiples of 4.
    Returns:
        (T, H * 3 // 2, W) uint8: the Y plane, then U and V planes.
    """
    rgb = frames.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    t, h, w = y.shape

    def sub(p: np.ndarray) -> np.ndarray:   # 2x2 average, then packed into (H/4, W) rows
        return p.reshape(t, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(t, h // 4, w)

    planes = np.concatenate([y, sub(u), sub(v)], axis=1)
    return np.clip(np.rint(planes), 0, 255).astype(np.uint8)


def _x264_asm() -> str:
    """The x264 CPU mask that gives the same bytes on every run and every machine.

    Measured with x264 core 165 on an AVX-512 CPU: with all extensions the output of
    the same frames varied from one encode to the next inside one process (so with
    the worker count); up to SSE2 it is stable and identical to x264's pure C path,
    which is what other architectures get.
    """
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
    return "MMX2,SSE,SSE2" if x86 else "0"


def encoder_options(codec: str, cfg: DemoConfig) -> dict[str, str]:
    """Single-threaded constant-quality options for libx264 / libvpx(-vp9)."""
    if codec == "libx264":
        return {"crf": str(cfg.h264_crf), "preset": cfg.h264_preset, "threads": "1",
                "x264-params": f"asm={_x264_asm()}"}
    opts = {"crf": str(cfg.vpx_crf), "threads": "1", "deadline": "good", "cpu-used": "4"}
    # VP8 needs a bitrate cap in CRF mode; VP9 takes b=0 as constant quality.
    opts["b"] = "0" if codec == "libvpx-vp9" else "1M"
    if codec == "libvpx-vp9":
        opts["row-mt"] = "0"
    return opts


def encode_video(path: Path, yuv: np.ndarray, codec: str, cfg: DemoConfig) -> None:
    """Encode yuv420p frames bit-exactly (no wall-clock metadata, one thread).

    Args:
        path: output .mp4 (H.264) or .webm (VP8/VP9) file.
        yuv: (T, H * 3 // 2, W) uint8 from `rgb_to_yuv420p`.
        codec: "libx264", "libvpx" or "libvpx-vp9".
        cfg: fps and quality settings.
    """
    import av   # imported here so that planning and tests of text need no FFmpeg

    fmt = "mp4" if codec == "libx264" else "webm"
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=cfg.fps, options=encoder_options(codec, cfg))
        stream.width, stream.height, stream.pix_fmt = cfg.size, cfg.size, "yuv420p"
        stream.time_base = Fraction(1, cfg.fps)
        stream.codec_context.thread_count = 1
        stream.codec_context.gop_size = cfg.fps     # a key frame every second: cheap seeks
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for k, plane in enumerate(yuv):
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# ----------------------------------------------------------------------------- items


def item_rng(cfg: DemoConfig, subset: str, index: int) -> np.random.Generator:
    """The generator of one item, from (seed, subset name, index): independent of workers."""
    return np.random.default_rng([cfg.seed, zlib.crc32(subset.encode("utf-8")), index])


def _n_frames(duration: float, cfg: DemoConfig) -> int:
    return max(int(round(duration * cfg.fps)), 1)


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
    n_frames = _n_frames(rng.uniform(cfg.video_min_s, cfg.video_max_s), cfg)
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
    frames = render_frames(tracks, _n_frames(duration, cfg), cfg, rng)
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
            parts.append(_fix_articles(text).rstrip(".").lower())
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
    frames = render_frames(tracks, _n_frames(t, cfg), cfg, rng)
    video_id = f"video{index}"
    encode_video(root / "msrvtt" / "videos" / "all" / f"{video_id}.mp4", rgb_to_yuv420p(frames), "libx264", cfg)
    return {"kind": "msrvtt", "id": video_id, "captions": _captions(tracks, cfg, rng)}


def _make_item(job: tuple[DemoConfig, str, str, int]) -> dict:
    """Worker entry point (module level, so spawn can pickle it)."""
    cfg, root, subset, index = job
    if subset == "yttemporal":
        return make_yt_video(cfg, Path(root), index)
    if subset == "yttemporal_bad":
        return make_yt_video(cfg, Path(root), index, bad=BAD_KINDS[index])
    if subset.startswith("ssv2_"):
        return make_ssv2_clip(cfg, Path(root), subset[len("ssv2_"):], index)
    return make_msrvtt_clip(cfg, Path(root), index)


# ----------------------------------------------------------------------------- corpus


def _jobs(cfg: DemoConfig, root: Path) -> list[tuple[DemoConfig, str, str, int]]:
    n_classes = len(cfg.ssv2_classes)
    counts = [("yttemporal", cfg.n_videos), ("yttemporal_bad", len(BAD_KINDS) if cfg.bad_items else 0),
              ("ssv2_train", cfg.ssv2_train_per_class * n_classes),
              ("ssv2_validation", cfg.ssv2_val_per_class * n_classes),
              ("msrvtt", cfg.msrvtt_train + cfg.msrvtt_test)]
    return [(cfg, str(root), subset, i) for subset, n in counts for i in range(n)]


def _run_jobs(jobs: list, workers: int) -> list[dict]:
    """Run the item jobs; results come back in job order either way."""
    if workers <= 1:
        return [_make_item(job) for job in jobs]
    # spawn: safe under threads and the same on every platform. An executor (not a
    # Pool) so that a dying worker raises BrokenProcessPool instead of being respawned.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_make_item, jobs, chunksize=2))


def _make_dirs(root: Path) -> None:
    for sub in (f"yttemporal/{YT_SUBSET}/data", f"yttemporal/{YT_SUBSET}/annotations",
                f"ssv2/{SSV2_VIDEO_DIR}", "msrvtt/annotation", "msrvtt/videos/all", f"msrvtt/{MSRVTT_SPLIT_DIR}"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _write_yttemporal(root: Path, rows: list[dict]) -> dict:
    lines = ["Name\tid\tduration"] + [f"{r['name']}\t{r['id']}\t{r['duration']:.3f}" for r in rows]
    _write_text(root / "yttemporal" / "videos.tsv", "\n".join(lines) + "\n")
    events = [dumps({"id": r["id"], "bad": r["bad"], "events": r["events"]}, indent=None) for r in rows]
    _write_text(root / "yttemporal" / "demo_events.jsonl", "".join(e + "\n" for e in events))
    good = [r for r in rows if not r["bad"]]
    return {"videos": len(good), "bad_items": len(rows) - len(good),
            "events": sum(len(r["events"]) for r in good),
            "hours": round(sum(r["duration"] for r in good) / 3600, 3)}


def _write_ssv2(root: Path, cfg: DemoConfig, train: list[dict], val: list[dict]) -> dict:
    names = sorted(ssv2_class_name(t) for t in cfg.ssv2_classes)
    _write_text(root / "ssv2" / "something-something-v2-labels.json",
                dumps({n: str(k) for k, n in enumerate(names)}) + "\n")
    _write_text(root / "ssv2" / "train.json", dumps([r["entry"] for r in train]) + "\n")
    _write_text(root / "ssv2" / "validation.json", dumps([r["entry"] for r in val]) + "\n")
    return {"classes": len(names), "train": len(train), "validation": len(val)}


def _write_msrvtt(root: Path, cfg: DemoConfig, rows: list[dict]) -> dict:
    annotations = [{"image_id": r["id"], "caption": c} for r in rows for c in r["captions"]]
    for k, a in enumerate(annotations):
        a["id"] = k
    _write_text(root / "msrvtt" / "annotation" / "MSR_VTT.json",
                dumps({"images": [{"id": r["id"]} for r in rows], "annotations": annotations}) + "\n")
    splits = root / "msrvtt" / MSRVTT_SPLIT_DIR
    train, test = rows[: cfg.msrvtt_train], rows[cfg.msrvtt_train:]
    _write_text(splits / "train_list_jsfusion.txt", "".join(r["id"] + "\n" for r in train))
    _write_text(splits / "val_list_jsfusion.txt", "".join(r["id"] + "\n" for r in test))
    return {"train": len(train), "test": len(test), "captions": len(annotations)}


def _encoder_versions() -> dict[str, Any]:
    import av
    return {"av": av.__version__, "numpy": np.__version__,
            "ffmpeg": {k: ".".join(map(str, v)) for k, v in sorted(av.library_versions.items())}}


def _write_indexes(root: Path, cfg: DemoConfig, results: list[dict]) -> dict:
    """Write the lists, labels and manifest from the per-item results."""
    by_kind: dict[str, list[dict]] = {}
    for r in results:
        by_kind.setdefault(r["kind"], []).append(r)
    summary = {"yttemporal": _write_yttemporal(root, by_kind.get("yttemporal", [])),
               "ssv2": _write_ssv2(root, cfg, by_kind.get("ssv2_train", []), by_kind.get("ssv2_validation", [])),
               "msrvtt": _write_msrvtt(root, cfg, by_kind.get("msrvtt", []))}
    files = [p for p in root.rglob("*") if p.is_file()]
    summary["files"] = len(files) + 1                # + the manifest
    summary["bytes"] = sum(p.stat().st_size for p in files)  # without the manifest
    manifest = {"stage": "demo", "config": asdict(cfg), "counts": summary, "versions": _encoder_versions()}
    _write_text(root / "manifest.json", dumps(manifest) + "\n")
    return summary


def generate_demo(out_dir: Path, cfg: DemoConfig, workers: int = 1) -> dict:
    """Write the whole synthetic corpus atomically under `out_dir`.

    Args:
        out_dir: the corpus root; replaced as a whole on success.
        cfg: the demo config.
        workers: processes to render and encode with (1 = in this process). The
            bytes written do not depend on it. Workers are spawned, so with more
            than one the caller's main module must be import-safe
            (`if __name__ == "__main__":`).
    Returns:
        A summary: counts per subset, number of files and total bytes.
    """
    with atomic_dir(out_dir) as tmp:
        _make_dirs(tmp)
        results = _run_jobs(_jobs(cfg, tmp), workers)
        return _write_indexes(tmp, cfg, results)


def load_events(path: Path) -> list[dict]:
    """The ground-truth events of demo_events.jsonl (for diagnostics and tests)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
