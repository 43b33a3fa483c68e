"""Hostile inputs and the messages they get: each bad input is a counted reject or one error
that names the file (and the key, member or line), never a hang, a crash of the whole job or a
library's own traceback."""
from __future__ import annotations

import errno
import gc
import io as stdio
import json
import logging
import sys
import tarfile
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from tvts import io
from tvts.config import ConfigError
from tvts.data import shards
from tvts.data.align import align_videos
from tvts.data.config import AlignConfig, ShardConfig, WindowConfig
from tvts.data.formats.yttemporal import VideoEntry, read_video_list
from tvts.workflow_config import validate_workflow_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
WINDOWS = WindowConfig(k=4, clip_lengths=(3.0,), gap_s=1.0, min_words_per_clip=1)
FPS, SECONDS = 8, 24


# ----------------------------------------------------------------------------- a tiny corpus
@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    """A 24 s, 32x32, 8 fps H.264 video, made once."""
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(FPS * SECONDS):
            frame = np.full((32, 32, 3), (i * 3) % 256, dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path.read_bytes()


def annotation(n_words: int = 80, duration: float = SECONDS) -> dict:
    words = [f"word{i % 17}" for i in range(n_words)]
    times = np.linspace(0.5, duration - 0.5, n_words)
    return {"subtitles": [{"word": w, "time": round(float(t), 3)} for w, t in zip(words, times)],
            "denoised": [{"cleanasr": " ".join(words)}], "info": {"duration": duration}}


def add_video(root: Path, video_bytes: bytes, vid: str, ann: dict | bytes | None = None,
              subset: str = "s0") -> str:
    """Write `<root>/<subset>/{data,annotations}/<vid>.*`; returns the list's Name."""
    (root / subset / "data").mkdir(parents=True, exist_ok=True)
    (root / subset / "annotations").mkdir(parents=True, exist_ok=True)
    (root / subset / "data" / f"{vid}.mp4").write_bytes(video_bytes)
    ann = annotation() if ann is None else ann
    raw = ann if isinstance(ann, bytes) else json.dumps(ann).encode()
    (root / subset / "annotations" / f"{vid}.json").write_bytes(raw)
    return f"{subset}/data/{vid}.mp4"


def align(names: list[str], root: Path, **align_cfg):
    entries = [VideoEntry(Path(n).stem, n) for n in names]
    return align_videos(entries, root, {"align_asr": AlignConfig(**align_cfg), "windows": WINDOWS})


def align_entries(entries: list[VideoEntry], root: Path):
    return align_videos(entries, root, {"align_asr": AlignConfig(), "windows": WINDOWS})


def reasons(rejects: io.Rejects) -> dict[str, str]:
    return {r["item"]: r["reason"] for r in rejects.rows}


# ----------------------------------------------------------------------------- list rows
def test_list_rows_outside_the_root_are_rejected_unless_allowed(tmp_path, video_bytes):
    root = tmp_path / "corpus"
    good = add_video(root, video_bytes, "good")
    add_video(tmp_path / "elsewhere", video_bytes, "up")
    absolute = add_video(tmp_path / "abs", video_bytes, "abs")
    names = [good, "../elsewhere/s0/data/up.mp4", str(tmp_path / "abs" / absolute)]
    rows, rejects, _ = align(names, root)
    assert [r["id"] for r in rows] == ["good"]
    assert reasons(rejects) == {"up": "outside_root", "abs": "outside_root"}
    rows, rejects, _ = align(names, root, allow_outside_root=True)
    assert [r["id"] for r in rows] == ["good", "up", "abs"] and not len(rejects)


def test_downstream_list_entries_outside_the_videos_folder_are_missing_not_read(tmp_path):
    from tvts.data.formats import read_split

    root = tmp_path / "ssv2"
    (root / "20bn-something-something-v2").mkdir(parents=True)
    (root / "20bn-something-something-v2" / "1.webm").write_bytes(b"x")
    for outside in (tmp_path / "up.webm", tmp_path / "abs.webm"):
        outside.write_bytes(b"x")
    (root / "val.csv").write_text(f"1.webm 0\n../../up.webm 1\n{tmp_path / 'abs.webm'} 2\n")
    vset = read_split("ssv2_list", root, "test")
    assert [i.video_id for i in vset.items] == ["1"]
    assert {m.video_id: m.reason for m in vset.missing} == {"up": "outside_root", "abs": "outside_root"}


def test_a_duplicate_video_id_is_rejected(tmp_path, video_bytes):
    names = [add_video(tmp_path, video_bytes, "dup", subset=s) for s in ("s0", "s1")]
    rows, rejects, _ = align(names, tmp_path)
    assert [r["video"] for r in rows] == [str(tmp_path / names[0])]
    assert [(r["item"], r["reason"]) for r in rejects.rows] == [("dup", "duplicate_id")]
    assert names[0] in rejects.rows[0]["detail"]


def test_ids_repeated_across_parts_or_equal_as_keys_give_no_duplicate_sample_keys(tmp_path, video_bytes):
    from tvts.data.sharding import write_shards

    # Three align parts that each kept one video: "a.b" and "a_b" give the same WebDataset key.
    listed = (("a_b", "s0"), ("a_b", "s1"), ("a.b", "s2"))
    names = [add_video(tmp_path, video_bytes, vid, subset=s) for vid, s in listed]
    rows = [r for n in names for r in align([n], tmp_path)[0]]
    assert len(rows) == 3
    (tmp_path / "shards").mkdir()
    sinks, rejects = write_shards(rows, tmp_path / "shards", ShardConfig(frames_per_window=2, short_side=16,
                                                                        val_fraction=0.5), workers=1)
    assert [(r["item"], r["reason"]) for r in rejects.rows] == [("a_b", "duplicate_id"), ("a.b", "duplicate_id")]
    keys = [s["__key__"] for split in shards.SPLITS for p in shards.list_shards(tmp_path / "shards", split)
            for s in shards.iter_tar_samples(p)]
    assert keys and len(keys) == len(set(keys))


def test_a_non_utf8_list_row_is_a_counted_reject_naming_the_file_and_line(tmp_path, video_bytes):
    """Finding: one non-UTF-8 row stopped the whole align_asr stage (rc 1, a 19-line traceback)."""
    path = tmp_path / "videos.tsv"
    names = [add_video(tmp_path, video_bytes, vid) for vid in ("a", "b")]
    path.write_bytes(f"Name\tNote\n{names[0]}\tok\ns0/data/caf\xe9.mp4\tx\n{names[1]}\tcaf\xe9\n".encode("latin-1"))
    entries = read_video_list(path)
    assert [e.invalid for e in entries] == ["", f"{path}:3: not UTF-8 (byte 0xe9)", f"{path}:4: not UTF-8 (byte 0xe9)"]
    rows, rejects, _ = align_entries(entries, tmp_path)
    assert [r["id"] for r in rows] == ["a"]
    assert [(r["item"], r["reason"], r["detail"]) for r in rejects.rows] == [
        (f"{path}:3", "invalid_utf8", f"{path}:3: not UTF-8 (byte 0xe9)"),
        (f"{path}:4", "invalid_utf8", f"{path}:4: not UTF-8 (byte 0xe9)")]
    (tmp_path / "bad-header.tsv").write_bytes(b"Na\xefme\ns0/data/a.mp4\n")
    with pytest.raises(ValueError, match=r"bad-header.tsv: no 'Name' column in the UTF-8 header"):
        read_video_list(tmp_path / "bad-header.tsv")


def test_the_align_stage_counts_a_non_utf8_row_and_goes_on(tmp_path, video_bytes):
    from tvts.stages import align_asr

    names = [add_video(tmp_path, video_bytes, vid) for vid in ("a", "b")]
    path = tmp_path / "videos.tsv"
    path.write_bytes(f"Name\n{names[0]}\ns0/data/caf\xe9.mp4\n{names[1]}\n".encode("latin-1"))
    cfg = json.dumps({"windows": {"k": 4, "clip_lengths": [3.0], "gap_s": 1.0, "min_words_per_clip": 1}})
    assert align_asr.main(["--list", str(path), "--out", str(tmp_path / "part-0.jsonl"), "--config-json", cfg]) == 0
    manifest_path, rejects_path = io.sidecars(tmp_path / "part-0.jsonl")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["counts"]["videos_in"] == 3 and manifest["counts"]["videos_kept"] == 2
    assert manifest["rejects"] == {"invalid_utf8": 1}
    assert [json.loads(line)["item"] for line in rejects_path.read_text().splitlines()] == [f"{path}:3"]


# ----------------------------------------------------------------------------- annotations
def test_decreasing_word_times_are_rejected(tmp_path, video_bytes):
    ann = annotation()
    ann["subtitles"][10]["time"], ann["subtitles"][11]["time"] = 9.0, 2.0
    rows, rejects, _ = align([add_video(tmp_path, video_bytes, "v", ann)], tmp_path)
    assert not rows and reasons(rejects) == {"v": "unordered_asr_times"}
    assert "word 12" in rejects.rows[0]["detail"]


@pytest.mark.parametrize("field", ["subtitles", "denoised"])
def test_a_word_of_ten_thousand_characters_is_rejected(tmp_path, video_bytes, field):
    ann = annotation()
    if field == "subtitles":
        ann["subtitles"][3]["word"] = "x" * 10_000
    else:
        ann["denoised"][0]["cleanasr"] += " " + "x" * 10_000
    rows, rejects, _ = align([add_video(tmp_path, video_bytes, "v", ann)], tmp_path)
    assert not rows and reasons(rejects) == {"v": "word_too_long"}
    rows, _, _ = align([add_video(tmp_path, video_bytes, "v", ann)], tmp_path,
                       max_word_chars=20_000, max_cost_per_word=1e9)
    assert rows


def test_invalid_utf8_in_an_annotation_is_rejected_naming_the_file(tmp_path, video_bytes):
    raw = json.dumps(annotation()).encode().replace(b"word3", b"wor\xff3", 1)
    rows, rejects, _ = align([add_video(tmp_path, video_bytes, "v", raw)], tmp_path)
    assert not rows and reasons(rejects) == {"v": "invalid_utf8"}
    assert str(tmp_path / "s0/annotations/v.json") in rejects.rows[0]["detail"]


def test_a_denoised_text_in_another_script_is_an_asr_mismatch(tmp_path, video_bytes):
    ann = annotation()
    ann["denoised"] = [{"cleanasr": " ".join(["слово"] * 80)}]
    rows, rejects, _ = align([add_video(tmp_path, video_bytes, "v", ann)], tmp_path)
    assert not rows and reasons(rejects) == {"v": "asr_mismatch"}


def test_a_duration_far_beyond_the_video_is_rejected_at_once(tmp_path, video_bytes):
    ann = annotation()
    ann["info"]["duration"] = 1e7
    t0 = time.perf_counter()
    rows, rejects, _ = align([add_video(tmp_path, video_bytes, "v", ann)], tmp_path)
    assert time.perf_counter() - t0 < 10
    assert not rows and reasons(rejects) == {"v": "duration_mismatch"}
    assert "1e+07" in rejects.rows[0]["detail"] or "10000000" in rejects.rows[0]["detail"]


def test_a_video_longer_than_the_cap_is_rejected(tmp_path, video_bytes):
    rows, rejects, _ = align([add_video(tmp_path, video_bytes, "v")], tmp_path, max_duration_s=10.0)
    assert not rows and reasons(rejects) == {"v": "video_too_long"}


def test_the_demo_corpus_loses_no_good_video_to_the_new_checks():
    """The default bounds reject none of the demo's videos (its max DTW cost per word is 1.125)."""
    root = ROOT / "data/demo/yttemporal"
    if not (root / "videos.tsv").exists():
        pytest.skip("data/demo is not pulled (make data)")
    entries = read_video_list(root / "videos.tsv")
    rows, rejects, _ = align_videos(entries, root, {"align_asr": AlignConfig(), "windows": WindowConfig()})
    new = {"outside_root", "duplicate_id", "unordered_asr_times", "word_too_long", "invalid_utf8", "asr_mismatch",
           "duration_mismatch", "video_too_long"}
    assert rows and not [r for r in rejects.rows if r["reason"] in new]


# ----------------------------------------------------------------------------- DAG-build checks
@pytest.fixture
def smoke_config(tmp_path, monkeypatch) -> dict:
    """The smoke config in a working directory that holds its data folders, empty."""
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    (tmp_path / "data/smoke/yttemporal").mkdir(parents=True)
    (tmp_path / "data/smoke/yttemporal/videos.tsv").write_text("Name\n")
    for spec in config["eval"]["datasets"].values():
        (tmp_path / spec["root"]).mkdir(parents=True)
    return config


def test_the_workflow_config_passes_with_its_inputs_present(smoke_config):
    validate_workflow_config(smoke_config, SCHEMA)


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["data"].update(yttemporal_list="data/smoke/yttemporal/typo.tsv"),
     "data.yttemporal_list: data/smoke/yttemporal/typo.tsv not found"),
    (lambda c: c["eval"]["datasets"]["ssv2"].update(root="data/smoke/ssv2-typo"),
     "eval.datasets.ssv2.root: data/smoke/ssv2-typo not found"),
    (lambda c: c["shard_clips"].update(val_fraction=0), "shard_clips.val_fraction: must be in (0, 1)"),
])
def test_missing_inputs_and_empty_splits_are_caught_when_the_dag_is_built(smoke_config, mutate, expected):
    mutate(smoke_config)
    with pytest.raises(ConfigError) as err:
        validate_workflow_config(smoke_config, SCHEMA)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_a_split_that_no_listed_video_falls_in_is_caught(smoke_config):
    (Path("data/smoke/yttemporal/videos.tsv")).write_text("Name\n" + "".join(f"s/data/v{i}.mp4\n" for i in range(5)))
    smoke_config["shard_clips"]["val_fraction"] = 1e-6
    with pytest.raises(ConfigError, match=r"^shard_clips.val_fraction: none of the 5 listed videos"):
        validate_workflow_config(smoke_config, SCHEMA)


def test_data_that_is_not_on_this_machine_is_left_to_the_jobs(tmp_path, monkeypatch):
    """The paper's config dry-runs anywhere: a path whose folder does not exist here is not checked."""
    monkeypatch.chdir(tmp_path)
    validate_workflow_config(yaml.safe_load((ROOT / "config/paper.yaml").read_text()), SCHEMA)


# ----------------------------------------------------------------------------- checkpoints
def foreign_pickle(path: Path) -> Path:
    from fractions import Fraction

    torch.save({"model": {}, "format": "tvts-workflow/1", "extra": Fraction(1, 2)}, path)
    return path


def truncated(path: Path) -> Path:
    torch.save({"format": "tvts-workflow/1", "model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    return path


def test_one_safe_loader_for_every_checkpoint():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tvts").rglob("*.py")
                 if "torch.load(" in p.read_text() and p != ROOT / "tvts/io.py"]
    assert offenders == []


def test_a_non_weights_pickle_gets_our_message_on_every_load_path(tmp_path):
    from tvts.models.init import initialise
    from tvts.models.load import load_model
    from tvts.train import checkpoint

    path = foreign_pickle(tmp_path / "foreign.pt")
    loaders = [lambda: checkpoint.load(path), lambda: load_model(path), lambda: io.load_weights(path),
               lambda: initialise(torch.nn.Linear(1, 1), f"tvts:{path}")]
    for load in loaders:
        with pytest.raises(ValueError) as err:
            load()
        msg = str(err.value)
        assert msg.startswith(f"{path}: not a tvts checkpoint, or not a weights-only file; refusing to unpickle"), msg
        assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg


def test_a_truncated_checkpoint_is_named(tmp_path):
    path = truncated(tmp_path / "epoch-0001_step-00000004.pt")
    with pytest.raises(io.CheckpointError, match=rf"^{path}: unreadable checkpoint \(truncated or corrupt"):
        io.load_weights(path)


def test_an_unreadable_checkpoint_is_skipped_counted_and_never_wins(tmp_path, caplog):
    from tvts.select import SelectConfig, choose_best, score_candidates

    good = tmp_path / "epoch-0000_step-00000002.pt"
    torch.save({"format": "tvts-workflow/1", "model": {}}, good)
    bad = truncated(tmp_path / "epoch-0001_step-00000004.pt")
    recorded = {2: {"sort_exact": 0.1, "step": 2.0}, 4: {"sort_exact": 0.9, "step": 4.0}}
    with caplog.at_level(logging.WARNING):
        scores, source, unreadable = score_candidates([good, bad], recorded, tmp_path, env=None)
    assert list(scores) == [good.name] and list(unreadable) == [bad.name]
    assert "skipping unreadable checkpoint" in caplog.text and bad.name in caplog.text
    assert list(score_candidates([bad], {}, tmp_path, env=None)[2]) == [bad.name]  # `rescore: true`

    # A file that passes the cheap check but fails to load when the winner is copied: the next one wins.
    written = []

    def write(src: Path, dst: Path, metric: str, value: float) -> None:
        if src == bad:
            raise io.CheckpointError(f"{src}: unreadable checkpoint (truncated or corrupt)")
        written.append(src)

    scores = {bad.name: recorded[4], good.name: recorded[2]}
    best, unreadable = choose_best(scores, {}, SelectConfig(metric="sort_exact"), tmp_path, tmp_path / "best.pt", write)
    assert best == good.name and written == [good] and list(unreadable) == [bad.name]


def fake_pretraining(root: Path, best_is_corrupt: bool = True) -> Path:
    """A pretraining folder whose manifest recorded both epochs' val scores; epoch 1 scored best."""
    from tvts.train import checkpoint

    pre = root / "pretrain"
    names = ["ckpt/epoch-0000_step-00000002.pt", "ckpt/epoch-0001_step-00000004.pt"]
    for step, name in ((2, names[0]), (4, names[1])):
        checkpoint.save(pre / name, {"model": {}, "config": {}, "text_spec": {}, "step": step,
                                     "steps_per_epoch": 2, "run_key": "k"})
    for name in names[1:] if best_is_corrupt else names:
        (pre / name).write_bytes((pre / name).read_bytes()[:200])
    history = [{"epoch": 0, "step": 2, "sort_exact": 0.1}, {"epoch": 1, "step": 4, "sort_exact": 0.9}]
    (root / "shards").mkdir()
    (pre / "manifest.json").write_text(json.dumps({"inputs": {"shards": str(root / "shards")}, "history": history,
                                                   "outputs": {"epoch_checkpoints": names}}))
    return pre


def select(root: Path, pre: Path) -> int:
    from tvts.stages import select_ckpt

    cfg = json.dumps({"select": {"register": False, "metric": "sort_exact"}})
    return select_ckpt.main(["--pretrain", str(pre), "--shards", str(root / "shards"), "--out", str(root / "select"),
                             "--exp", "faults", "--config-json", cfg])


def test_select_ckpt_never_lets_a_corrupt_checkpoint_win(tmp_path):
    assert select(tmp_path, fake_pretraining(tmp_path)) == 0
    selection = json.loads((tmp_path / "select/selection.json").read_text())
    assert selection["best"] == "epoch-0000_step-00000002.pt"
    assert list(selection["unreadable"]) == ["epoch-0001_step-00000004.pt"]
    assert selection["counts"] == {"candidates": 2, "scored": 1, "unreadable": 1}
    assert [c["checkpoint"] for c in selection["candidates"]] == ["epoch-0000_step-00000002.pt"]


def test_select_ckpt_with_no_readable_checkpoint_says_so(tmp_path):
    with pytest.raises(SystemExit, match="select_ckpt: .*no readable candidate checkpoint"):
        select(tmp_path, fake_pretraining(tmp_path, best_is_corrupt=False))


# ----------------------------------------------------------------------------- shard members
def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, stdio.BytesIO(data))
    return path


@pytest.mark.parametrize("members,expected", [
    ({"k_w000.f000.jpg": b"x"}, r"k_w000.json: missing member \(the sample has no json\)"),
    ({"k_w000.json": b"{not json", "k_w000.f000.jpg": b"x"}, "k_w000.json: invalid JSON"),
])
def test_a_malformed_shard_member_names_the_shard_and_member(tmp_path, members, expected):
    from tvts.train.data import WindowDataset

    tar = write_tar(tmp_path / "val-000000.tar", members)
    sample = next(shards.iter_tar_samples(tar))
    with pytest.raises(shards.ShardError, match=rf"^{tar}: {expected}"):
        shards.decode_sample(sample, 1, where=tar)
    dataset = WindowDataset.__new__(WindowDataset)  # the reader side, without a tokenizer or model
    from tvts.train.data import index_shards

    dataset.refs, dataset._files = index_shards([tar]), {}
    with pytest.raises(shards.ShardError, match=rf"^{tar}: {expected}"):
        dataset.meta(0)


# ----------------------------------------------------------------------------- disk full
def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_a_shard_names_the_path_and_leaves_no_tmp(tmp_path, monkeypatch):
    out = tmp_path / "shards"
    sink = shards.ShardSink(out, "train", 1)
    def addfile(tar, *args):
        tar.fileobj.write(b"\0" * 512)  # a header reached the stream's buffer, then the disk filled
        enospc()

    monkeypatch.setattr(tarfile.TarFile, "addfile", addfile)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(OSError) as err, io.atomic_dir(out) as tmp:
        sink.out_dir = tmp
        sink.add({"__key__": "k_w000", "json": b"{}"})
    code, msg = err.value.errno, str(err.value)
    del err  # its traceback holds the writer: let it go, as a job's end would
    gc.collect()
    assert not unraisable  # the half-written tar stream did not write into its closed file later
    assert code == errno.ENOSPC and "No space left on device" in msg and "train-000000.tar" in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write", [lambda p: io.atomic_write_jsonl(p, [{"a": 1}]),
                                   lambda p: io.atomic_write_json(p, {"a": 1})])
def test_disk_full_in_an_atomic_write_names_the_path_and_leaves_no_tmp(tmp_path, monkeypatch, write):
    class FullDisk(stdio.StringIO):
        write = enospc

    monkeypatch.setattr("tvts.io.open", lambda *a, **k: FullDisk(), raising=False)
    monkeypatch.setattr(Path, "write_bytes", enospc)
    with pytest.raises(OSError) as err:
        write(tmp_path / "out.json")
    assert err.value.errno == errno.ENOSPC
    assert f"No space left on device: {tmp_path / 'out.json'}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_saving_a_checkpoint_says_so_and_leaves_no_tmp(tmp_path, monkeypatch):
    import errno
    import io as _io

    import torch

    from tvts.train import checkpoint

    class FullDisk(_io.RawIOBase):
        written = 0

        def writable(self):
            return True

        def write(self, b):
            FullDisk.written += len(b)
            if FullDisk.written > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(b)

    real_open = open
    monkeypatch.setattr(checkpoint, "open", lambda p, mode="r", *a, **k: FullDisk() if "w" in mode
                        else real_open(p, mode, *a, **k), raising=False)
    target = tmp_path / "ckpt" / "step-00000001.pt"
    target.parent.mkdir()
    with pytest.raises(OSError, match=r"No space left on device: .*step-00000001\.pt"):
        checkpoint.save(target, {"model": {"w": torch.zeros(100_000)}})
    assert list(target.parent.iterdir()) == []
