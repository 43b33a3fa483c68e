"""Training augmentation of a downstream clip: one random draw per clip, applied to every frame.

The fine-tuning recipe of the paper (VideoMAE's): RandAugment `rand-m7-n4-mstd0.5-inc1` on the
frames, a random resized crop to the model's input, a horizontal flip (not on SSV2, whose
classes name directions), ImageNet normalisation, then random erasing with probability 0.25.
Every frame of a clip gets the *same* ops, crop, flip and erased box, so the augmentation
never invents motion that is not in the video.

How timm's RandAugment gives every frame the same ops: `rand_augment_transform` picks its ops
with numpy's global RNG, and each op draws whether it applies, its noisy magnitude, its sign
and its interpolation from Python's `random`, all while it runs. None of these draws depends
on the pixels. So we draw one seed per clip from the clip's own RNG, and before *each frame*
reseed both global generators with that seed: every frame replays exactly the same draws
(same ops, magnitudes, signs, interpolation). The generators' previous states are restored
afterwards, so the training process's own random streams are not disturbed.

Random erasing (timm's `RandomErasing`, mode "pixel", one box) sees the normalised clip as a
single image with 3T channels, (3, T, S, S) -> (3T, S, S): one box, the same on every frame,
filled with per-pixel normal noise. Its draws are seeded the same way (torch's RNG is forked).

All randomness comes from the `np.random.Generator` a dataset builds from (seed, epoch,
video index), so a clip's augmentation is the same in a resumed run and on any rank.
"""
from __future__ import annotations

import contextlib
import math
import random
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tvts.models.video_vit import MEAN, STD


@contextlib.contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Restore Python's, numpy's and torch's (CPU) global RNG states on exit."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


def reseed_globals(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (inside `preserved_global_rngs`)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                     rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random box covering `scale` of the area with aspect ratio in `ratio` (the Inception crop).

    Args:
        height, width: the frame.
        scale: (min, max) share of the frame's area.
        ratio: (min, max) width / height, sampled log-uniformly.
        rng: the clip's RNG.
    Returns:
        (y0, x0, h, w); after 10 failed tries, the largest centred box within `ratio`.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


class ClipAugment:
    """The fine-tuning augmentation of one clip (see the module docstring).

    Args:
        img_size: the model's square input side.
        rand_augment: a timm RandAugment string (e.g. "rand-m7-n4-mstd0.5-inc1"); "" = none.
        reprob: random erasing probability (0 = none).
        scale, ratio: the random resized crop's area share and aspect-ratio ranges.
        flip: random horizontal flip of the whole clip with probability 0.5.
    """

    def __init__(self, img_size: int, rand_augment: str = "", reprob: float = 0.0,
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip: bool = False):
        from timm.data.auto_augment import rand_augment_transform
        from timm.data.random_erasing import RandomErasing

        self.img_size, self.scale, self.ratio, self.flip = img_size, tuple(scale), tuple(ratio), flip
        # timm's own defaults for hparams: translations scale with the crop, fills use the mean colour.
        hparams = {"translate_const": int(img_size * 0.45), "img_mean": tuple(int(round(255 * m)) for m in MEAN)}
        self.rand_augment = rand_augment_transform(rand_augment, hparams) if rand_augment else None
        self.erase = RandomErasing(reprob, mode="pixel", max_count=1, device="cpu") if reprob > 0 else None

    def rand_augment_frames(self, frames: np.ndarray, seed: int) -> np.ndarray:
        """The same RandAugment ops on every frame: (T, H, W, 3) uint8 -> same shape."""
        if self.rand_augment is None:
            return frames
        out = []
        with preserved_global_rngs():
            for frame in frames:
                reseed_globals(seed)                     # replay the clip's draws for this frame
                out.append(np.asarray(self.rand_augment(Image.fromarray(frame)), dtype=np.uint8))
        return np.stack(out)

    def crop_flip_normalise(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """One random resized crop (and flip) for the whole clip: (T, H, W, 3) uint8 -> (3, T, S, S)."""
        y0, x0, h, w = resized_crop_box(frames.shape[1], frames.shape[2], self.scale, self.ratio, rng)
        clip = torch.from_numpy(np.ascontiguousarray(frames[:, y0:y0 + h, x0:x0 + w])).permute(0, 3, 1, 2).float()
        clip = F.interpolate(clip, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False,
                             antialias=True)                                   # (T, 3, S, S)
        if self.flip and rng.random() < 0.5:
            clip = clip.flip(-1)
        mean, std = torch.from_numpy(MEAN)[:, None, None], torch.from_numpy(STD)[:, None, None]
        clip = (clip.clamp(0, 255) / 255.0 - mean) / std
        return clip.permute(1, 0, 2, 3).contiguous()                           # (3, T, S, S)

    def erase_clip(self, clip: torch.Tensor, seed: int) -> torch.Tensor:
        """One erased box (same place on every frame) on a normalised (3, T, S, S) clip."""
        if self.erase is None:
            return clip
        c, t, s1, s2 = clip.shape
        with preserved_global_rngs():
            reseed_globals(seed)
            flat = self.erase(clip.reshape(c * t, s1, s2))                    # one image of 3T channels
        return flat.reshape(c, t, s1, s2)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Augment one clip.

        Args:
            frames: (T, H, W, 3) uint8, resized so the short side is at least img_size.
            rng: the clip's RNG (seeded by seed, epoch, video index).
        Returns:
            (3, T, S, S) float32, normalised.
        """
        aug_seed, erase_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
        frames = self.rand_augment_frames(frames, aug_seed)
        return self.erase_clip(self.crop_flip_normalise(frames, rng), erase_seed)
