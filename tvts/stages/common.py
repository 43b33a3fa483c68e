"""Arguments and plumbing shared by every stage's command line."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

from tvts.config import ConfigError
from tvts.io import CheckpointError, InputUnavailable
from tvts.train.preemption import PREEMPTED, Diverged, Preempted, TooManyBadSamples

log = logging.getLogger("tvts")

# The CPU kernels' instruction set, per library: ATen's vectorised ops, oneDNN (convolutions and
# more) and MKL's BLAS. Each reads its variable when torch first calls it. On the smoke config
# oneDNN's AVX-512 kernels are the ones that changed the weights (an AMD CPU; measured);
# MKL picks its code path by CPU vendor as well, so all three are pinned.
ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}}


def cpu_isa_env(isa: str) -> dict[str, str]:
    """The environment that pins torch's CPU kernels to `isa` (config `cpu_isa`); {} for "", the
    best the CPU has.

    Raises:
        ConfigError: for an ISA not in `ISA_ENV`.
    """
    if isa and isa not in ISA_ENV:
        raise ConfigError(f"cpu_isa: {isa!r} is not one of {sorted(ISA_ENV)} or \"\"")
    return dict(ISA_ENV.get(isa, {}))


def job_environment(isa: str, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What the Snakefile adds to every job's environment.

    PATH starts with the bin folder of the interpreter running Snakemake, so jobs run its `tvts`
    and `torchrun` whether or not the venv is activated (`--sdm conda` puts its env's bin first
    in each job's shell, so that env's `tvts` wins there); `cpu_isa_env(isa)` pins the kernels.
    """
    path = env.get("PATH", "")
    bindir = os.path.dirname(sys.executable)
    if path.split(os.pathsep)[0] != bindir:
        path = os.pathsep.join([bindir, path]) if path else bindir
    return {"PATH": path} | cpu_isa_env(isa)


def add_common_args(p: argparse.ArgumentParser) -> None:
    """--exp, --rule and the stage's config source (--config or --config-json): what every stage takes."""
    p.add_argument("--exp", default="demo", help="experiment name (outputs live under results/<exp>/)")
    p.add_argument("--rule", default=None, help="Snakemake rule name, recorded as the MLflow tag tvts.rule")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", dest="config_path", help="full YAML config file (stage sections are read from it)")
    src.add_argument("--config-json", dest="config_json", help="the stage's sections as JSON (what the rules pass)")


def add_store_args(p: argparse.ArgumentParser) -> None:
    """--tracking-uri and --experiment: the MLflow store that a reading command (compare, report) reads."""
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default=None,
                   help="MLflow experiment name (default: $TVTS_MLFLOW_EXPERIMENT or tvts)")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def command(build_parser: Callable[[], argparse.ArgumentParser]):
    """Make `run(args)` a stage's `main(argv)`: parse, set up logging, run; the library's exceptions
    become exit codes here, and nowhere else.

    `Preempted` -> PREEMPTED (75: checkpoint written, rerun to resume), and so does
    `InputUnavailable` (a remote input down past its retries: rerun later); `ConfigError` -> one line
    naming the key, exit status 1; so do `Diverged` (the divergence guard), `TooManyBadSamples`
    (unreadable samples past `data.max_bad_samples`) and `CheckpointError`
    (an unreadable or non-finite checkpoint), naming the step or the file.
    """
    def decorate(run: Callable[[argparse.Namespace], int | None]) -> Callable[..., int]:
        @functools.wraps(run)
        def main(argv: list[str] | None = None) -> int:
            args = build_parser().parse_args(argv)
            setup_logging()
            try:
                return int(run(args) or 0)
            except Preempted as err:
                log.warning("%s; exiting with %d", err, PREEMPTED)
                return PREEMPTED
            except InputUnavailable as err:  # an outage past the retries: retry the job later
                log.error("%s; exiting with %d (retry later)", str(err).strip().splitlines()[-1], PREEMPTED)
                return PREEMPTED
            except (ConfigError, Diverged, TooManyBadSamples, CheckpointError) as err:
                raise SystemExit(f"{run.__module__.rsplit('.', 1)[-1]}: {err}") from None
        return main
    return decorate


def init_stage_parser(prog: str, doc: str, shards_help: str, out_help: str) -> argparse.ArgumentParser:
    """The command line of an init stage (init_image_mae, init_text_mlm)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    p.add_argument("--shards", required=True, help=shards_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")
    add_common_args(p)
    return p


def run_init_stage(args: argparse.Namespace, stage: str, section: type, part: str, train: Callable,
                   manifest: Path, outputs: dict | None = None) -> tuple[object, dict, dict]:
    """Train an init stage's model in one MLflow run and write its manifest.

    Args:
        section: the stage's config dataclass (config section `stage`).
        part: the `pretrain.model` part whose sizes the model takes ("video" or "text").
        train: `train(shards, sizes, cfg, out, env) -> body` with counts, losses, history and
            optionally rejects (tvts.train.image_mae / text_mlm).
        manifest: where the manifest goes (`--out` may be a file or a folder).
        outputs: more of the manifest's outputs.
    Returns:
        (the stage's config, the training body, timings).
    """
    import torch

    from tvts import io, tracking
    from tvts.config import load_sections
    from tvts.train import distributed as dist
    from tvts.train.config import PretrainConfig

    sections = load_sections({stage: section, "pretrain": PretrainConfig}, args.config_path, args.config_json)
    cfg, sizes = sections[stage], getattr(sections["pretrain"].model, part)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = dist.init_distributed(use_cuda=False if args.cpu else None)
    params = {stage: cfg, part: sizes}
    with tracking.stage_run(stage, args.exp, params, rule=args.rule) as mlrun:
        timings: dict[str, float] = {}
        with io.timer(timings, "train_s"):
            body = train(args.shards, sizes, cfg, Path(args.out), env)
        mlrun.log_metrics({"init/loss_first": body["losses"]["first"], "init/loss_final": body["losses"]["final"]})
        io.write_manifest(manifest, stage=stage, inputs={"shards": str(args.shards)}, config=params,
                          counts=body["counts"], rejects=body.get("rejects") or io.Rejects(stage), timings=timings,
                          outputs=(outputs or {}) | {"losses": body["losses"], "history": body["history"]})
    return cfg, body, timings
