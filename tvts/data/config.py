"""The data stages' config sections: `align_asr`, `windows` and `shard_clips` (see docs/configuration.md)."""
from __future__ import annotations

from dataclasses import dataclass

from tvts.config import require


@dataclass(frozen=True)
class AlignConfig:
    """ASR cleaning and DTW alignment (docs/method.md, 'ASR alignment')."""

    band_min: int = 32            # R = max(band_frac * len(asr), band_min)
    band_frac: float = 0.1
    outside_cost: float = 1000.0  # DTW cost outside the ±R band
    max_length_ratio: float = 3.0  # denoised/asr word-count ratio beyond which a video is rejected
    max_garbled_fraction: float = 0.3  # share of non-Latin / mis-encoded words beyond which ASR is garbled
    min_asr_words: int = 8
    max_word_chars: int = 64       # a longer word (ASR or denoised) rejects the video: no spoken word is
    max_cost_per_word: float = 3.0  # mean DTW cost per path step above which the two texts do not match
    max_duration_s: float = 10800.0  # hard cap on a video's length: window planning is linear in it
    duration_tolerance_s: float = 5.0  # info.duration may differ this much from the container's
    allow_outside_root: bool = False  # list names may point outside the corpus root (absolute, ../)

    def check(self, where: str) -> None:
        require(self.band_min >= 1, where, "band_min", "must be >= 1")
        require(0 <= self.band_frac <= 1, where, "band_frac", "must be in [0, 1]")
        require(self.max_length_ratio >= 1, where, "max_length_ratio", "must be >= 1")
        require(0 <= self.max_garbled_fraction <= 1, where, "max_garbled_fraction", "must be in [0, 1]")
        require(self.outside_cost > 0, where, "outside_cost", "must be > 0")
        require(self.min_asr_words >= 0, where, "min_asr_words", "must be >= 0")
        require(self.max_word_chars >= 1, where, "max_word_chars", "must be >= 1")
        require(self.max_cost_per_word > 0, where, "max_cost_per_word", "must be > 0")
        require(self.max_duration_s > 0, where, "max_duration_s", "must be > 0")
        require(self.duration_tolerance_s >= 0, where, "duration_tolerance_s", "must be >= 0")


@dataclass(frozen=True)
class WindowConfig:
    """Windows of K consecutive clips (docs/method.md, 'Pretext task')."""

    k: int = 4
    clip_lengths: tuple[float, ...] = (3.0, 4.0, 5.0)  # one length per window, drawn at random
    gap_s: float = 1.0
    stride_s: float = 1.0           # spacing of candidate window starts
    allow_overlap: bool = False     # False: greedily keep non-overlapping valid windows
    min_words_per_clip: int = 2
    max_windows_per_video: int = 0  # 0 = no limit
    seed: int = 0

    def check(self, where: str) -> None:
        require(self.k >= 2, where, "k", "must be >= 2")
        require(len(self.clip_lengths) > 0 and min(self.clip_lengths) > 0, where, "clip_lengths", "must be positive")
        require(self.gap_s >= 0, where, "gap_s", "must be >= 0")
        require(self.stride_s > 0, where, "stride_s", "must be > 0")
        require(self.min_words_per_clip >= 0, where, "min_words_per_clip", "must be >= 0")
        require(self.max_windows_per_video >= 0, where, "max_windows_per_video", "must be >= 0 (0 = no limit)")


DECODE_MODES = ("auto", "sequential", "seek", "per_window")


@dataclass(frozen=True)
class ShardConfig:
    """Frame decoding and WebDataset sharding."""

    frames_per_window: int = 48   # stored frames; the trainer samples 16 TSN-style among them
    short_side: int = 128
    jpeg_quality: int = 90
    val_fraction: float = 0.1
    samples_per_shard: int = 256
    workers: int = 2
    # How a video's windows are decoded: `auto` cuts them all from one PyAV pass, decoding on
    # through dense stretches and seeking across sparse ones by a measured cost model
    # (tvts/data/video.py); `sequential` never seeks, `seek` always does (same frames, other
    # costs); `per_window` is the former path: decord, one get_batch per window.
    decode_mode: str = "auto"
    decoder: str = "cpu"  # `gpu`: NVDEC through torchcodec (needs torchcodec and a CUDA device)

    def check(self, where: str) -> None:
        require(self.frames_per_window >= 1, where, "frames_per_window", "must be >= 1")
        require(self.short_side >= 8, where, "short_side", "must be >= 8")
        require(1 <= self.jpeg_quality <= 100, where, "jpeg_quality", "must be in [1, 100]")
        # 0 would leave select_ckpt (and the trainer's validation) no val split to score on
        require(0 < self.val_fraction < 1, where, "val_fraction",
                "must be in (0, 1): the val split scores the checkpoints")
        require(self.samples_per_shard >= 1, where, "samples_per_shard", "must be >= 1")
        require(self.workers >= 1, where, "workers", "must be >= 1")
        require(self.decode_mode in DECODE_MODES, where, "decode_mode", f"must be one of {', '.join(DECODE_MODES)}")
        require(self.decoder in ("cpu", "gpu"), where, "decoder", "must be cpu or gpu")
