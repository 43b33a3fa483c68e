"""Deterministic synthetic corpus in the exact real formats (YT-Temporal, SSV2, MSR-VTT).

The demo world: coloured shapes on a mildly textured grey background. A pretraining
video is a sequence of *events*; in each event one freshly drawn shape (the actor)
performs one action while a narrator describes it, and a few persistent un-narrated
distractor shapes drift slowly so that appearance alone never identifies the actor.
docs/demo-corpus.md describes the corpus and why it is built this way.

Everything is seeded per item from (seed, subset name, index) and encoded with
single-threaded bit-exact encoders after a numpy RGB->YUV conversion, so the bytes do
not depend on the number of worker processes.

The modules, in the order an item passes through them:
    vocab, config   the world's words and the `DemoConfig` that holds every setting
    tracks          steps, tracks and events: what a plan is made of
    plans           an item's events (the event grammar) and SSV2 clips
    narration       the narrator's sentence and its noisy, timed ASR words
    render          frames from tracks
    encode          bit-exact H.264 / VP8 / VP9
    yttemporal      one pretraining video and its annotation (and the broken ones)
    downstream      one SSV2-format or MSR-VTT-format clip
    layout          the folders the dataset readers rely on
    corpus          `generate_demo`: every item, then the lists, labels and manifest
"""
from __future__ import annotations

from tvts.data.demo.config import DemoConfig
from tvts.data.demo.corpus import generate_demo, load_events
from tvts.data.demo.narration import asr_words, describe
from tvts.data.demo.plans import item_rng, plan_events, plan_ssv2_clip, plan_track
from tvts.data.demo.render import shape_distance, track_state
from tvts.data.demo.tracks import Event, Step
from tvts.data.demo.vocab import SSV2_PHRASES, ssv2_class_name
from tvts.data.demo.yttemporal import BAD_KINDS

__all__ = ["DemoConfig", "generate_demo", "load_events", "BAD_KINDS", "SSV2_PHRASES", "Event", "Step",
           "asr_words", "describe", "item_rng", "plan_events", "plan_ssv2_clip", "plan_track",
           "shape_distance", "ssv2_class_name", "track_state"]
