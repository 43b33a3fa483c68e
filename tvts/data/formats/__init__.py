"""Downstream dataset readers, one module per format, behind one call.

    vs = read_split("ucf101", "data/ucf101", "test", fold=2)

`read_split` checks the format, split and options, then hands over to the format's reader,
whose module docstring states the exact files and layout it accepts. "test" is always the split
the paper evaluates on (SSV2 validation, Kinetics val, the UCF/HMDB test list of `fold`,
MSR-VTT 1k-A, ...). Classification readers fill `label` and `classes`; retrieval readers fill
`captions`. `fold` only matters for ucf101 and hmdb51; the others ignore it.

The post-pretraining sources are read by `webvid.read_webvid` and `cc3m.read_cc3m`, called
directly: they return `common.PairItem`s and count what they leave out in a `tvts.io.Rejects`.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from tvts.data.formats import didemo, hmdb51, kinetics, lsmdc, msrvtt, msvd, ssv2, ucf101
from tvts.data.formats.common import SPLITS, FormatError, Missing, VideoItem, VideoSet

READERS: dict[str, Callable[..., VideoSet]] = {
    "ssv2": ssv2.read,
    "ssv2_list": ssv2.read_list,
    "kinetics400": kinetics.read,
    "ucf101": ucf101.read,
    "hmdb51": hmdb51.read,
    "msrvtt": msrvtt.read,
    "didemo": didemo.read,
    "msvd": msvd.read,
    "lsmdc": lsmdc.read,
}
CLASSIFICATION = ("ssv2", "ssv2_list", "kinetics400", "ucf101", "hmdb51")
RETRIEVAL = ("msrvtt", "didemo", "msvd", "lsmdc")

__all__ = ["read_split", "CLASSIFICATION", "RETRIEVAL", "READERS", "SPLITS",
           "FormatError", "Missing", "VideoItem", "VideoSet"]


def read_split(fmt: str, root: str | Path, split: str, fold: int = 1, **options) -> VideoSet:
    """Read one split of a downstream dataset.

    Args:
        fmt: one of CLASSIFICATION or RETRIEVAL.
        root: the dataset's root folder.
        split: "train" or "test".
        fold: the fold of ucf101/hmdb51 (1-3); ignored by the other formats.
        **options: reader options, e.g. `videos=` (the videos folder) for every format and
            `num_classes=` for ssv2_list.

    Returns:
        The split's existing items, its classes, and the listed videos that are missing.

    Raises:
        ValueError: an unknown format, split or option (naming the allowed values).
        FormatError: a malformed annotation file (naming the file and line).
    """
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {fmt!r}; allowed: {', '.join(READERS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    reader = READERS[fmt]
    _check_options(fmt, reader, options)
    return reader(Path(root), split, fold, **options)


def _check_options(fmt: str, reader: Callable[..., VideoSet], options: dict) -> None:
    # A misspelt option would otherwise surface as a bare TypeError from deep inside a stage.
    allowed = [p.name for p in inspect.signature(reader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{fmt}: unknown option(s) {unknown}; allowed: {', '.join(allowed)}")
