"""`tvts <stage> ...`: one subcommand per workflow stage, each a module with `main(argv=None)`."""
from __future__ import annotations

import ctypes
import importlib
import signal
import sys

COMMANDS = {
    "make-demo": ("tvts.stages.make_demo", "generate the embedded demo corpus"),
    "fetch-videos": ("tvts.stages.fetch_videos", "download the release's videos and captions (yt-dlp), one part"),
    "transcribe": ("tvts.stages.transcribe", "Whisper word-timed transcripts of fetched videos without captions"),
    "join-fetched": ("tvts.stages.join_fetched", "availability.json + the fetched videos as a YT-Temporal corpus"),
    "align-asr": ("tvts.stages.align_asr", "clean + DTW-align YT-Temporal ASR, cut K-clip windows"),
    "shard-clips": ("tvts.stages.shard_clips", "decode window frames into WebDataset shards"),
    "shard-union": ("tvts.stages.shard_union", "list the shard_clips parts as one shard set (set.json)"),
    "shard-pairs": ("tvts.stages.shard_pairs", "captioned images (CC3M) and clips (WebVid) into WebDataset shards"),
    "pretrain": ("tvts.stages.pretrain", "TVTS pretraining (run under torchrun for several GPUs)"),
    "select-ckpt": ("tvts.stages.select_ckpt", "score epoch checkpoints on the val shards, write best.pt"),
    "init-image-mae": ("tvts.stages.init_image_mae", "the ImageMAE stand-in: an image MAE on single train frames"),
    "init-text-mlm": ("tvts.stages.init_text_mlm", "the DistilBERT stand-in: a masked-LM text encoder on the narration"),
    "post-pretrain": ("tvts.stages.post_pretrain", "contrastive post-pretraining on the pair shards, then selection"),
    "init-model": ("tvts.stages.init_model", "the untrained model of a no-pretraining baseline, in best.pt format"),
    "eval-zeroshot-v2v": ("tvts.stages.eval_zeroshot_v2v", "zero-shot video-to-video retrieval (frozen CLS)"),
    "eval-linear": ("tvts.stages.eval_linear", "linear probe on cached frozen features"),
    "eval-temporal": ("tvts.stages.eval_temporal", "temporal-order probes: within-pair and arrow of time (frozen)"),
    "eval-finetune": ("tvts.stages.eval_finetune", "end-to-end fine-tuning for classification (torchrun)"),
    "eval-t2v": ("tvts.stages.eval_t2v", "text-to-video retrieval, zero-shot and fine-tuned (torchrun)"),
    "compare": ("tvts.stages.compare", "side-by-side table of experiments from the MLflow store"),
    "report": ("tvts.stages.report", "summary.md + plots of every experiment, against the paper"),
    "launch": ("tvts.launch", "run a training stage under torchrun (one node, or srun + c10d across nodes)"),
    "inspect-shards": ("tvts.stages.inspect_shards", "print a shard folder's counts and samples; contact sheet"),
    "tracking": ("tvts.stages.tracking_cli", "MLflow store and parent run (used by the Snakefile)"),
}


def usage() -> str:
    lines = ["usage: tvts <command> [args]", "", "commands:"]
    lines += [f"  {name:<18} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have Linux send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG).

    A job's process is its `tvts` (every rule `exec`s it), so a job gets SIGTERM when Snakemake
    dies, by SIGKILL too: a stage ends, a trainer checkpoints and exits 75 (tvts.train.preemption)
    instead of writing on for nobody. The setting survives exec, so the torchrun that `tvts launch`
    becomes has it, and torchrun's workers run this entry point themselves.

    Returns:
        Whether the kernel took it (False off Linux).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own command line, not a call in-process (tests)
        die_with_parent()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"tvts: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
