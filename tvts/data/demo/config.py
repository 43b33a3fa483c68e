"""`DemoConfig`: every size, speed, probability and word list of the demo corpus, and its check.

The `demo:` section of a config file loads into it (`tvts.config.from_dict`), and `check`
rejects values that would make a video unrenderable or the event grammar unsatisfiable
before any item is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tvts.config import require
from tvts.data.demo.vocab import (ACTIONS, IRREVERSIBLE, ROTATION_INVARIANT, SHAPES, default_colors,
                                  default_mishearings, default_ssv2_classes, default_templates, ssv2_class_name)

VPX_CODECS = ("libvpx", "libvpx-vp9")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
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
    colors: dict[str, list] = field(default_factory=default_colors)   # name -> [r, g, b]
    actions: tuple[str, ...] = ACTIONS  # drawn uniformly per event
    actor_size_min: float = 24.0        # diameter of the shape's circumscribed circle; large enough
    actor_size_max: float = 32.0        # that tube masking (0.75) leaves some of it visible (v2c)
    move_speed_px_s: float = 10.0       # shared by pretraining, SSV2 and MSR-VTT
    grow_px_s: float = 3.0              # diameter change per second
    rotate_deg_s: float = 30.0          # slow enough that a square (90-degree symmetry)
                                        # does not alias when frames are ~1.4 s apart
    pop_min_frac: float = 0.3           # appear/disappear moment, as a fraction of its step
    pop_max_frac: float = 0.7           # (shatter breaks at its pop time too)
    # the irreversible events (vocab.IRREVERSIBLE); the floor is the frame's bottom edge
    gravity_px_s2: float = 120.0        # a 50 px drop takes 0.9 s
    bounce: float = 0.4                 # restitution: each bounce rises bounce^2 of the last height
    fall_min_drop_px: float = 24.0      # a falling shape starts at least this far above its resting place
    fall_min_frac: float = 0.1          # when the fall starts, as a fraction of its step: early,
    fall_max_frac: float = 0.3          # so that it has settled before the event ends
    shatter_pieces: int = 4
    shatter_piece_frac: float = 0.5     # a piece's size over the whole shape's
    shatter_speed_px_s: float = 24.0    # the pieces' speed as they fly apart, before they land
    n_distractors: int = 2              # persistent, never narrated
    distractor_speed_px_s: float = 1.5
    background_grey: int = 110
    background_texture: float = 6.0     # amplitude of a smooth static texture (grey levels)
    frame_noise_std: float = 0.0        # per-frame pixel noise (costs a lot of bytes)
    # narration and ASR noise
    p_name_actor: float = 0.5           # per sentence: name the actor ("the red square"), else a
    generic_nouns: tuple[str, ...] = ("shape", "thing", "object")   # generic noun ("the shape")
    distinct_recent: int = 3            # an event's action differs from the last N events' (0: i.i.d.)
    templates: dict[str, list] = field(default_factory=default_templates)  # action -> sentences with {obj}
    words_per_s: float = 3.0            # speaking rate of the ASR words (a sentence takes ~2 s of its event)
    p_filler: float = 0.08              # per word: insert a filler before it
    fillers: tuple[str, ...] = ("um", "uh", "so", "okay", "like", "yeah", "well")
    p_drop: float = 0.05                # per word: ASR misses it
    p_substitute: float = 0.15          # per word with an entry in mishearings
    mishearings: dict[str, list] = field(default_factory=default_mishearings)
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
    ssv2_classes: dict[str, list] = field(default_factory=default_ssv2_classes)  # template -> actions
    ssv2_train_per_class: int = 240
    ssv2_val_per_class: int = 80
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
        require(self.fall_min_drop_px >= 0 and self.actor_size_max + self.fall_min_drop_px + 2 <= self.size, where,
                 "fall_min_drop_px", "the drop and the largest shape must fit in the frame")

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
        require(0 <= self.fall_min_frac <= self.fall_max_frac < 1, where, "fall_min_frac",
                 "need 0 <= fall_min_frac <= fall_max_frac < 1")
        require(self.gravity_px_s2 > 0, where, "gravity_px_s2", "must be > 0")
        require(0 <= self.bounce < 1, where, "bounce", "must be in [0, 1)")
        require(self.shatter_pieces >= 2, where, "shatter_pieces", "must be >= 2")
        require(0 < self.shatter_piece_frac < 1, where, "shatter_piece_frac", "must be in (0, 1)")
        require(self.shatter_speed_px_s >= 0, where, "shatter_speed_px_s", "must be >= 0")
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
                         f"{template!r}: steps must be actions; appear only first, disappear only last,"
                         " fall and shatter only alone")
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
    if len(steps) > 1 and set(steps) & IRREVERSIBLE:    # a fall or a break is an actor's only step
        return False
    return "appear" not in steps[1:] and "disappear" not in steps[:-1]
