"""The folder layout of the corpus, which the dataset readers (`tvts.data.formats`) rely on.

    yttemporal/videos.tsv, yttemporal/subset_0/{data/<id>.mp4, annotations/<id>.json}
    yttemporal/demo_events.jsonl          ground-truth events (diagnostics only)
    ssv2/something-something-v2-labels.json, ssv2/{train,validation}.json,
    ssv2/20bn-something-something-v2/<id>.webm
    msrvtt/annotation/MSR_VTT.json, msrvtt/videos/all/<id>.mp4,
    msrvtt/high-quality/structured-symlinks/{train,val}_list_jsfusion.txt
    manifest.json                         config, counts and encoder versions
"""
from __future__ import annotations

from pathlib import Path

YT_SUBSET = "subset_0"
SSV2_VIDEO_DIR = "20bn-something-something-v2"
MSRVTT_SPLIT_DIR = "high-quality/structured-symlinks"


def make_dirs(root: Path) -> None:
    """Create every folder of the layout below `root`."""
    for sub in (f"yttemporal/{YT_SUBSET}/data", f"yttemporal/{YT_SUBSET}/annotations",
                f"ssv2/{SSV2_VIDEO_DIR}", "msrvtt/annotation", "msrvtt/videos/all", f"msrvtt/{MSRVTT_SPLIT_DIR}"):
        (root / sub).mkdir(parents=True, exist_ok=True)
