"""Whisper word-timed transcripts through `transformers`, in MERLOT's annotation format.

Whisper (a local folder, `transcribe.model`; nothing is downloaded) runs through transformers'
speech-recognition pipeline, which cuts long audio into `chunk_s` windows and times each word by
dynamic time warping over the decoder's cross-attention (the model's `alignment_heads`). A word
is timed by its start; times are clipped to the audio and made non-decreasing, which Whisper
does not promise across windows. The punctuated text becomes `denoised`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tvts.data.fetch.config import TranscribeConfig

SAMPLE_RATE = 16000  # Whisper's


def load_audio(path: str | Path) -> np.ndarray:
    """A file's first audio track as 16 kHz mono float32 in [-1, 1] (PyAV).

    Raises:
        ValueError: the file has no audio track (naming it).
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio track")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = [frame.to_ndarray().reshape(-1) for packet in container.demux(audio=0)
                  for decoded in packet.decode() for frame in resampler.resample(decoded)]
        chunks += [frame.to_ndarray().reshape(-1) for frame in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def build_pipeline(cfg: TranscribeConfig):
    """transformers' ASR pipeline on the local model folder.

    Raises:
        FileNotFoundError: `transcribe.model` is not a folder.
    """
    import torch
    from transformers import pipeline

    if not cfg.model or not Path(cfg.model).is_dir():
        raise FileNotFoundError(f"transcribe.model: {cfg.model!r} is not a local model folder")
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    return pipeline("automatic-speech-recognition", model=cfg.model, chunk_length_s=cfg.chunk_s,
                    batch_size=cfg.batch_size, device=device)


def words_of(chunks: list[dict], duration: float) -> list[dict]:
    """The pipeline's word chunks as `subtitles`: stripped words, start times clipped to
    [0, duration] and non-decreasing."""
    subtitles, last = [], 0.0
    for chunk in chunks:
        word = (chunk.get("text") or "").strip()
        start = (chunk.get("timestamp") or (None,))[0]
        if not word or start is None:
            continue
        last = min(max(float(start), last), duration)
        subtitles.append({"word": word, "time": round(last, 3)})
    return subtitles


def transcribe_audio(pipe, audio: np.ndarray, cfg: TranscribeConfig) -> dict:
    """One recording's annotation fields.

    Returns:
        {"subtitles": [{word, time}], "denoised": [{"cleanasr": text}], "duration": seconds}.
    """
    duration = len(audio) / SAMPLE_RATE
    out = pipe({"raw": audio, "sampling_rate": SAMPLE_RATE}, return_timestamps="word",
               generate_kwargs={"language": cfg.language, "task": "transcribe"})
    text = " ".join((out.get("text") or "").split())
    return {"subtitles": words_of(out.get("chunks") or [], duration),
            "denoised": [{"cleanasr": text}] if text else [], "duration": duration}
