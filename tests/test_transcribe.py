"""transcribe: a tiny randomly initialised Whisper, built here, through transformers' pipeline on
espeak-ng speech; its annotation goes through the join into what align_asr reads."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tvts import io
from tvts.data import asr
from tvts.data.formats.yttemporal import load_annotation, read_video_list
from tvts.data.transcribe import SAMPLE_RATE, load_audio, words_of
from tvts.stages import join_fetched, transcribe

SENTENCE = "the red ball rolls to the left and the blue cube jumps up high"


def tiny_whisper(out: Path, seed: int = 0) -> Path:
    """A Whisper with one 32-wide layer each side and random weights, with a byte-level tokenizer
    that has Whisper's special and timestamp tokens in Whisper's order, saved as a model folder.

    Its generation may only emit lower-case letters and spaces and never stops early (EOS is
    suppressed), so the random model writes words rather than stray bytes.
    """
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_chars = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(byte_chars.values())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]  # right after <|notimestamps|>, as Whisper's
    for token in specials + stamps:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>", additional_special_tokens=specials[1:])
    tokenizer.add_tokens(stamps)
    ids = {s: vocab[s] for s in specials}
    allowed = {vocab[byte_chars[b]] for b in b"abcdefghijklmnopqrstuvwxyz "}
    eos, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    cfg = WhisperConfig(vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=48, pad_token_id=eos, bos_token_id=eos,
                        eos_token_id=eos, decoder_start_token_id=sot)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"], is_multilingual=True,
        lang_to_id={"<|en|>": ids["<|en|>"]}, task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        max_initial_timestamp_index=50, alignment_heads=[[0, 0], [0, 1]], max_length=48, begin_suppress_tokens=[],
        suppress_tokens=[i for i in range(len(byte_chars)) if i not in allowed] + [eos])
    model.save_pretrained(out)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), SENTENCE], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny")


def test_load_audio_resamples_to_16k_mono(speech):
    audio = load_audio(speech)  # espeak-ng writes 22.05 kHz
    assert audio.dtype.name == "float32" and audio.ndim == 1
    assert 2.0 < len(audio) / SAMPLE_RATE < 10.0 and 0.1 < abs(audio).max() <= 1.0


def test_words_of_clips_times_into_the_audio_and_keeps_them_in_order():
    chunks = [{"text": " a", "timestamp": (0.5, 0.7)}, {"text": " b", "timestamp": (0.2, 0.4)},
              {"text": " ", "timestamp": (1.0, 1.1)}, {"text": "c", "timestamp": (9.0, 9.5)}]
    assert words_of(chunks, 3.0) == [{"word": "a", "time": 0.5}, {"word": "b", "time": 0.5}, {"word": "c", "time": 3.0}]


def test_transcribe_writes_an_annotation_align_asr_accepts(speech, whisper_dir, tmp_path):
    duration = len(load_audio(speech)) / SAMPLE_RATE
    fetched = tmp_path / "fetch-part-0.jsonl"
    row = {"id": "speech00001", "status": "ok", "reason": None, "video": str(speech), "duration": duration,
           "sha256": "0" * 64, "caption_lang": None}
    captioned = row | {"id": "captioned01", "caption_lang": "en"}  # has captions: not transcribed
    io.atomic_write_jsonl(fetched, [row, captioned])
    cfg = json.dumps({"transcribe": {"model": str(whisper_dir), "device": "cpu", "batch_size": 1}})
    out = tmp_path / "transcribe-part-0.jsonl"
    assert transcribe.main(["--fetched", str(fetched), "--out", str(out), "--config-json", cfg, "--exp", "tr"]) == 0
    rows = io.read_jsonl(out)
    assert [r["id"] for r in rows] == ["speech00001"]
    times = [w["time"] for w in rows[0]["subtitles"]]
    assert len(times) >= 2 and times == sorted(times) and 0 <= times[0] and times[-1] <= duration
    # The same text: Whisper's (punctuated) text as `denoised`, its words timed as `subtitles`.
    assert "".join(rows[0]["denoised"][0]["cleanasr"].split()) == "".join(w["word"] for w in rows[0]["subtitles"])

    video_list = tmp_path / "corpus" / "videos.tsv"
    assert join_fetched.main(["--parts", str(fetched), "--transcripts", str(out), "--availability",
                              str(tmp_path / "availability.json"), "--list", str(video_list),
                              "--config-json", json.dumps({"fetch": {}}), "--exp", "tr"]) == 0
    entries = read_video_list(video_list)
    assert [e.video_id for e in entries] == ["speech00001"]  # the captioned row's VTT does not exist: not joined
    ann = load_annotation(entries[0], video_list.parent)  # what align_asr reads; raises on a bad annotation
    assert ann.info["transcript"] == "whisper" and ann.duration == pytest.approx(duration)
    words, word_times = asr.clean_asr_words(ann.subtitles)
    assert len(words) == len(rows[0]["subtitles"]) and list(word_times) == times
