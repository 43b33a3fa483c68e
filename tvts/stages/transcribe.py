"""Stage `transcribe`: Whisper word-timed transcripts of one fetch part's videos without captions.

Reads `--fetched` (a fetch_videos part-N.jsonl) and writes `<out>` (one JSON line per transcribed
video: `{id, subtitles, denoised, duration, model}`), `<stem>.manifest.json` and
`<stem>.rejects.jsonl`. With `transcribe.all_videos` every present video is transcribed.
join_fetched prefers these words over the captions.
"""
from __future__ import annotations

import argparse
import logging

from tqdm import tqdm

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.fetch.config import TranscribeConfig
from tvts.data.transcribe import build_pipeline, load_audio, transcribe_audio
from tvts.stages.common import add_common_args, command

log = logging.getLogger("tvts.transcribe")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts transcribe", description=__doc__.splitlines()[0])
    p.add_argument("--fetched", required=True, help="a fetch_videos part-N.jsonl")
    p.add_argument("--out", required=True, help="output part-N.jsonl")
    add_common_args(p)
    return p


def wanted(rows: list[dict], cfg: TranscribeConfig) -> list[dict]:
    return [r for r in rows if r["status"] == "ok" and (cfg.all_videos or not r.get("caption_lang"))]


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg: TranscribeConfig = load_sections({"transcribe": TranscribeConfig}, args.config_path, args.config_json)["transcribe"]
    todo = wanted(io.read_jsonl(args.fetched), cfg)
    manifest_path, rejects_path = io.sidecars(args.out)
    rejects, out, timings = io.Rejects("transcribe"), [], {}
    with tracking.stage_run("transcribe", args.exp, {"transcribe": cfg}, rule=args.rule) as mlrun:
        with io.timer(timings, "transcribe_s"):
            pipe = build_pipeline(cfg) if todo else None
            for row in tqdm(todo, desc="transcribe", unit="video", mininterval=5):
                try:
                    audio = load_audio(row["video"])
                except (OSError, ValueError) as err:
                    rejects.add(row["id"], "no_audio", str(err))
                    continue
                out.append({"id": row["id"], "model": cfg.model} | transcribe_audio(pipe, audio, cfg))
        io.atomic_write_jsonl(args.out, out)
        rejects.write(rejects_path)
        counts = {"videos_in": len(todo), "transcribed": len(out), "words": sum(len(r["subtitles"]) for r in out)}
        io.write_manifest(manifest_path, stage="transcribe", inputs={"fetched": args.fetched}, config=cfg,
                          counts=counts, rejects=rejects, timings=timings, outputs={"jsonl": args.out})
        mlrun.log_metrics(counts | {"rejects": rejects.counts()} | timings)
    log.info("%d of %d videos transcribed (%d words)", len(out), len(todo), counts["words"])
    return 0
