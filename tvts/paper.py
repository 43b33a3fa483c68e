"""The TVTS paper's reported numbers (ViT-B pretrained on YT-Temporal), as a typed table.

They are reference values printed beside runs that used `config/paper.yaml`, never
results of this project (those are in docs/results.md; docs/method.md, "The paper's
numbers", tables these). Keys use the names the evaluation runs are tagged and logged
with: (`tvts.task`, `tvts.dataset`, metric key).
"""
from __future__ import annotations

from dataclasses import dataclass

DATASET_NAMES = {"ssv2": "SSV2", "k400": "K400", "ucf101": "UCF-101", "hmdb51": "HMDB-51",
                 "msrvtt": "MSR-VTT", "didemo": "DiDeMo", "msvd": "MSVD", "lsmdc": "LSMDC"}
CITATION = "Zeng et al., CVPR 2023 (arXiv 2209.15280), ViT-B pretrained on YT-Temporal"


@dataclass(frozen=True)
class PaperNumber:
    """One reported value and where it comes from."""

    task: str
    dataset: str
    metric: str
    value: float
    label: str  # the evaluation it belongs to, short
    best_other: str = ""  # the strongest other method the paper lists for that evaluation


def _rows() -> list[PaperNumber]:
    v2v = "SSV2 zero-shot V2V retrieval"
    svt = {"r1": "SVT (K400) 11.3", "r5": "SVT (K400) 30.7", "r10": "SVT (K400) 41.1"}
    rows = [PaperNumber("zeroshot_v2v", "ssv2", m, v, v2v, svt[m])
            for m, v in (("r1", 14.7), ("r5", 38.4), ("r10", 50.5))]
    rows.append(PaperNumber("linear", "ssv2", "top1", 31.5, "SSV2 linear probe",
                            "MViT (K400) 19.4; VideoMAE (K400) 17.9"))
    finetune = {"ssv2": (68.5, "VideoMAE (YT-T) 67.9"), "k400": (78.8, "OmniVL 79.1"),
                "ucf101": (95.1, "VideoMAE (YT-T) 94.2"), "hmdb51": (70.5, "VideoMAE (YT-T) 68.4")}
    rows += [PaperNumber("finetune", d, "top1", v, f"{DATASET_NAMES[d]} fine-tune", other)
             for d, (v, other) in finetune.items()]
    t2v = {"msrvtt": (34.6, 3, "Frozen 31.0"), "didemo": (32.4, 3, "Frozen 31.0"),
           "msvd": (45.9, 2, "Frozen 45.6"), "lsmdc": (17.2, 17, "Frozen 15.0")}
    for d, (r1, medr, other) in t2v.items():
        label = f"{DATASET_NAMES[d]} text-to-video, fine-tuned"
        rows.append(PaperNumber("t2v", d, "finetuned/r1", r1, label, other))
        rows.append(PaperNumber("t2v", d, "finetuned/medr", float(medr), label))
    return rows


PAPER: dict[tuple[str, str, str], PaperNumber] = {(r.task, r.dataset, r.metric): r for r in _rows()}

# The paper's second model, post-pretrained on CC3M + WebVid-2M (`dag.post_pretrain`): it reports
# these two numbers for it, beside the YT-Temporal model's 68.5 and 78.8.
POST_LABEL = "YT-Temporal + CC3M + WebVid-2M"
POST: dict[tuple[str, str, str], float] = {("finetune", "ssv2", "top1"): 69.1, ("finetune", "k400", "top1"): 79.8}


def paper_post_value(task: str, dataset: str, metric: str) -> float | None:
    """The post-pretrained model's reported value, or None where the paper gives none."""
    return POST.get((task, dataset, metric))


def paper_number(task: str, dataset: str, metric: str) -> PaperNumber | None:
    """The paper's entry for (task, dataset, metric), or None where it reports none."""
    return PAPER.get((task, dataset, metric))


def paper_value(task: str, dataset: str, metric: str) -> float | None:
    entry = paper_number(task, dataset, metric)
    return entry.value if entry else None


# Table 4 of the paper, SSV2 (the methods the demo's comparison mirrors), for orientation beside
# the methods x seeds comparison. (task, dataset, metric) -> value; a method lists only what the
# paper reports for it; VideoMAE (K400)'s zero-shot R@1 of 7.9 is in docs/method.md, "The paper's numbers".
TABLE4: dict[str, dict[tuple[str, str, str], float]] = {
    "TVTS (YT-Temporal)": {("linear", "ssv2", "top1"): 31.5, ("zeroshot_v2v", "ssv2", "r1"): 14.7,
                           ("zeroshot_v2v", "ssv2", "r5"): 38.4, ("zeroshot_v2v", "ssv2", "r10"): 50.5,
                           ("finetune", "ssv2", "top1"): 68.5},
    "VideoMAE (K400)": {("linear", "ssv2", "top1"): 17.9, ("zeroshot_v2v", "ssv2", "r1"): 7.9},
    "VideoMAE (YT-Temporal)": {("linear", "ssv2", "top1"): 15.9, ("finetune", "ssv2", "top1"): 67.9},
}
