"""Test- and train-time views of a downstream video: TSN frames, short-side resize, crops.

A *view* is one (temporal, spatial) choice of frames and crop. The clip layout is the one
the pretraining model reads (`tvts.train.data.load_frames`): (3, T, S, S) float32 after
ImageNet normalisation, T = the model's `num_frames`, S = its `img_size`.

Temporal views (TSN-style over the whole video): the video is cut into `num_frames` equal
segments and one frame is taken from each. Training takes a uniformly random frame per
segment. Test view t of `temporal_views` takes the frame at fraction (t + 0.5) / temporal_views
of every segment, so the 2 test views are the frames at 1/4 and 3/4 of each segment, and a
single test view is the segment centre (the pretraining validation view).

Spatial views: every frame is resized (bilinear) so its short side is `short_side`, then a
square of `img_size` is cropped. Training crops at a uniformly random position. Test view s
of `spatial_views` places the crop at fraction s / (spatial_views - 1) along the *longer* side
(left / centre / right for 3 views of a landscape video, top / centre / bottom for portrait)
and centres it on the shorter side; a square frame spreads along the width. One test view is
the centre crop. When the resized frame is only as large as the crop along that side, the
spatial views coincide (they are still computed, so V is always temporal x spatial).

Views are ordered temporal-major: view v = t * spatial_views + s.

Unreadable videos never raise out of the dataset: `ClipDataset` returns `ok=False`, zero
frames and the reject reason, and callers drop those rows before computing metrics (see
`ClipDataset.__getitem__`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tvts.data.formats.common import VideoItem
from tvts.data.video import decode_frames, open_video, resize_short_side
from tvts.io import RejectError
from tvts.models.video_vit import MEAN, STD


def clip_indices(n_frames: int, num_frames: int, temporal_view: int = 0, temporal_views: int = 1,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices of one temporal view: one frame in each of `num_frames` equal segments.

    Args:
        n_frames: frames in the video (>= 1).
        num_frames: frames the model takes (segments).
        temporal_view: which test view, 0 <= temporal_view < temporal_views (ignored with `rng`).
        temporal_views: number of test views; view t takes offset (t + 0.5) / temporal_views in each segment.
        rng: training: a random frame in each segment.
    Returns:
        (num_frames,) int64 indices in [0, n_frames); repeated when the video is shorter than num_frames.
    """
    edges = np.linspace(0.0, n_frames, num_frames + 1)
    width = edges[1:] - edges[:-1]
    if rng is not None:
        pos = edges[:-1] + rng.random(num_frames) * width
    else:
        pos = edges[:-1] + width * (temporal_view + 0.5) / temporal_views
    return np.clip(np.floor(pos).astype(np.int64), 0, n_frames - 1)


def crop_offset(height: int, width: int, size: int, spatial_view: int = 0, spatial_views: int = 1,
                rng: np.random.Generator | None = None) -> tuple[int, int]:
    """Top-left corner (y0, x0) of one `size` x `size` crop of a (height, width) frame.

    Args:
        height, width: the resized frame (both >= size).
        size: the crop side (the model's img_size).
        spatial_view: which test view, spread along the longer side (ignored with `rng`).
        spatial_views: number of test views (1 = centre crop).
        rng: training: a uniformly random position.
    Returns:
        (y0, x0).
    """
    if height < size or width < size:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {size}")
    if rng is not None:
        return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    centre = ((height - size) // 2, (width - size) // 2)
    if spatial_views == 1:
        return centre
    along = round((spatial_view / (spatial_views - 1)) * (max(height, width) - size))
    return (along, centre[1]) if height > width else (centre[0], along)


def normalise(frames: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (3, T, S, S) float32 with ImageNet mean/std, as in pretraining."""
    arr = (frames.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 0, 1, 2)))


class ClipDataset(Dataset):
    """Map-style dataset of downstream videos as model input, `temporal_views x spatial_views` views each.

    Args:
        items: the videos (e.g. `VideoSet.items`).
        num_frames, img_size: the model's input (PretrainConfig `model.video`).
        short_side: short side after resizing, before cropping (>= img_size).
        temporal_views, spatial_views: views per video (see the module docstring).
        train: random frames and crops from an RNG seeded by (seed, epoch, index); else fixed test views.
        seed: the training RNG's seed.
    """

    def __init__(self, items: list[VideoItem], num_frames: int, img_size: int, short_side: int,
                 temporal_views: int = 1, spatial_views: int = 1, train: bool = False, seed: int = 0):
        if short_side < img_size:
            raise ValueError(f"short_side {short_side} is smaller than the model's crop {img_size}")
        if temporal_views < 1 or spatial_views < 1:
            raise ValueError("temporal_views and spatial_views must be >= 1")
        self.items = list(items)
        self.num_frames, self.img_size, self.short_side = num_frames, img_size, short_side
        self.temporal_views, self.spatial_views = temporal_views, spatial_views
        self.train, self.seed, self.epoch = train, seed, 0

    @property
    def views(self) -> int:
        return self.temporal_views * self.spatial_views

    def set_epoch(self, epoch: int) -> None:
        """Training views depend on (seed, epoch, index): call before each epoch (workers see it on fork)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def empty(self) -> torch.Tensor:
        """The zero clip stack returned for an unreadable video: (V, 3, T, S, S)."""
        return torch.zeros(self.views, 3, self.num_frames, self.img_size, self.img_size)

    def __getitem__(self, index: int) -> dict:
        """One video's views.

        Returns:
            {"frames": (V, 3, T, S, S) float32, "label": int, "index": int, "ok": bool, "reason": str}.
            A video that cannot be decoded gives ok=False, zero frames and reason (e.g.
            "video_unreadable"): callers keep `ok` rows only and add the others to their Rejects.
        """
        item = self.items[index]
        out = {"label": item.label, "index": index, "ok": True, "reason": ""}
        try:
            out["frames"] = self.load(item.path, index)
        except RejectError as err:
            out.update(frames=self.empty(), ok=False, reason=err.reason)
        return out

    def load(self, path: Path, index: int) -> torch.Tensor:
        """Decode every view's frames in one batch, resize once, crop per view: (V, 3, T, S, S).

        Raises:
            RejectError: missing_video or video_unreadable.
        """
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        vr = open_video(path)
        n = len(vr)
        per_view = [clip_indices(n, self.num_frames, t, self.temporal_views, rng) for t in range(self.temporal_views)]
        wanted = np.unique(np.concatenate(per_view))
        decoded = decode_frames(vr, wanted, path)                                   # (U, H, W, 3)
        resized = np.stack([resize_short_side(f, self.short_side) for f in decoded])
        h, w = resized.shape[1:3]
        clips = []
        for idx in per_view:
            frames = resized[np.searchsorted(wanted, idx)]                          # (T, H', W', 3)
            for s in range(self.spatial_views):
                y0, x0 = crop_offset(h, w, self.img_size, s, self.spatial_views, rng)
                clips.append(normalise(frames[:, y0:y0 + self.img_size, x0:x0 + self.img_size]))
        return torch.stack(clips)                                                   # (V, 3, T, S, S)


def view_name(temporal_views: int, spatial_views: int, short_side: int) -> str:
    """A short name of a view setting, used in feature cache file names: '2x3-224'."""
    return f"{temporal_views}x{spatial_views}-{short_side}"
