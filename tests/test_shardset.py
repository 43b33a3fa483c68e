"""Shard sets: the union of parts, local or served over HTTP, and training from a URL."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from tvts.data import shardset
from tvts.data.shardset import ShardSetError, open_shard_set
from tvts.train.data import ResumableBatchSampler, ViewConfig, WindowDataset
from tvts.models.video_vit import VideoConfig

from conftest import SMOKE

VIEW = ViewConfig(VideoConfig(img_size=32, patch_size=8, tubelet=2, num_frames=8, dim=32, depth=1, heads=2),
                  k=4, mask_ratio=0.75, max_length=16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Python's http.server ignores `Range`; object stores and web servers honour it. This one does
# (single ranges, as fsspec sends them) and logs each request's status, to count them.
RANGE_SERVER = r"""
import http.server, io, os, re, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if m is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a, b = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
        with open(path, "rb") as f:
            f.seek(a)
            data = f.read(b - a + 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)
http.server.test(HandlerClass=Handler, port=int(sys.argv[1]), bind="127.0.0.1")
"""


def serve(root: Path, command: list[str], port: int, log: Path):
    """Run an HTTP server over `root` until the generator is closed; yields its base URL."""
    with open(log, "w") as err:
        server = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(200):  # until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def www(smoke_shards, tmp_path_factory) -> Path:
    """A folder holding the smoke shards as `part-0`, and as `noindex` without their index files."""
    root = tmp_path_factory.mktemp("www")
    shutil.copytree(smoke_shards, root / "part-0")
    shutil.copytree(smoke_shards, root / "noindex")
    for index in (root / "noindex").glob("*-index.json"):
        index.unlink()
    return root


@pytest.fixture(scope="module")
def served(www):
    """(folder, base URL, request log) of a Range-capable server on 127.0.0.1."""
    port, log = free_port(), www.parent / "range-server.log"
    gen = serve(www, [sys.executable, "-c", RANGE_SERVER, str(port)], port, log)
    yield www, next(gen), log
    gen.close()


@pytest.fixture(scope="module")
def plain_served(www):
    """The base URL of `python -m http.server` on 127.0.0.1 (no Range support) over the same folder."""
    port = free_port()
    gen = serve(www, [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], port,
                www.parent / "plain-server.log")
    yield next(gen)
    gen.close()


def write_set(folder: Path, parts: list[str]) -> Path:
    path = folder / "set.json"
    path.write_text(json.dumps({"version": 1, "parts": parts, "counts": {}, "rejects": {}, "parts_md5": {}}))
    return path


def test_a_plain_shard_folder_is_a_set_of_one_part(smoke_shards):
    shards = open_shard_set(str(smoke_shards))
    assert shards.parts == (str(smoke_shards),)
    assert shards.fingerprint() == hashlib.sha256((smoke_shards / "manifest.json").read_bytes()).hexdigest()
    refs = shards.refs("train")
    assert refs and all(Path(r.shard).parent == smoke_shards for r in refs)


def test_a_set_file_is_the_union_of_its_parts_in_order(smoke_shards, tmp_path):
    shutil.copytree(smoke_shards, tmp_path / "part-1")
    one = open_shard_set(smoke_shards).refs("train")
    path = write_set(tmp_path, ["part-1", str(smoke_shards)])             # relative and absolute entries
    shards = open_shard_set(str(path))
    assert shards.parts == (f"{tmp_path}/part-1", str(smoke_shards))
    refs = shards.refs("train")
    assert [(r.key, r.members) for r in refs] == [(r.key, r.members) for r in one] * 2
    assert {Path(r.shard).parent for r in refs[:len(one)]} == {tmp_path / "part-1"}
    assert open_shard_set(tmp_path).fingerprint() == shards.fingerprint()  # the folder holding set.json
    assert shards.fingerprint() == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(path.read_text().replace("part-1", str(tmp_path / "part-1")))
    assert open_shard_set(path).fingerprint() != shards.fingerprint()     # another set file, another run
    ds = WindowDataset(str(path), "train", VIEW, None, 0)
    assert len(ds) == 2 * len(one) and ds.read(len(one)) == WindowDataset(smoke_shards, "train", VIEW, None, 0).read(0)


@pytest.mark.parametrize("doc,expected", [
    ("{not json", "not a shard set file"),
    (json.dumps({"version": 2, "parts": ["a"]}), "set version 2, not 1"),
    (json.dumps({"version": 1, "parts": []}), "'parts' must be a non-empty list"),
])
def test_a_bad_set_file_is_one_error_naming_it(tmp_path, doc, expected):
    (tmp_path / "s.json").write_text(doc)
    with pytest.raises(ShardSetError, match=rf"^{tmp_path}/s\.json: {expected}"):
        open_shard_set(tmp_path / "s.json")


def test_missing_parts_and_pipe_urls_are_clear_errors(tmp_path):
    with pytest.raises(ShardSetError, match=rf"^{tmp_path}/nope: no such shard folder"):
        open_shard_set(write_set(tmp_path, ["nope"])).refs("train")
    with pytest.raises(ShardSetError, match=r"^pipe:curl -s x: the pipe: scheme is not supported"):
        open_shard_set("pipe:curl -s x")


def test_http_parts_read_the_same_samples_as_local_ones(served, smoke_shards, caplog):
    root, base, log = served
    local = WindowDataset(smoke_shards, "val", VIEW, None, 0)
    with caplog.at_level("WARNING"):
        remote = WindowDataset(f"{base}/part-0", "val", VIEW, None, 0)
    assert not caplog.records                                            # the served index was used
    assert [(r.key, r.members) for r in remote.refs] == [(r.key, r.members) for r in local.refs]
    assert remote.refs[0].shard.startswith(f"{base}/part-0/val-")        # '//' intact
    before = len(log.read_text().splitlines())
    assert all(remote.read(i) == local.read(i) for i in range(len(local)))
    tar_gets = [line for line in log.read_text().splitlines()[before:] if '"GET /part-0/val-' in line]
    assert tar_gets and all('" 206 ' in line for line in tar_gets)  # ranged reads only, never a whole tar
    assert len(tar_gets) == len(local)                               # one request per sample (its span)
    before = len(log.read_text().splitlines())
    assert remote.read_field(1, "json") == local.read_field(1, "json")
    assert len(log.read_text().splitlines()) == before + 1            # and one per member read alone
    with caplog.at_level("WARNING"):
        rebuilt = open_shard_set(f"{base}/noindex").refs("val")          # no index: headers streamed
    assert "rebuilding the index from the tar headers" in caplog.text
    assert [(r.key, r.members) for r in rebuilt] == [(r.key, r.members) for r in local.refs]
    (root / "set.json").write_text(json.dumps({"version": 1, "parts": ["part-0", "noindex"]}))
    assert len(open_shard_set(f"{base}/set.json").refs("val")) == 2 * len(local)


def test_http_reads_in_forked_loader_workers(served, smoke_shards):
    _, base, _ = served
    local = WindowDataset(smoke_shards, "val", VIEW, None, 0)
    remote = WindowDataset(f"{base}/part-0", "val", VIEW, None, 0)
    remote.read(0)                                  # the parent's HTTP client exists before the fork
    from tvts.models.text import TextConfig, build_spec

    local.spec = remote.spec = build_spec(TextConfig(model="scratch"), local.texts())

    def batches(ds, workers):
        sampler = ResumableBatchSampler(len(ds), 2, seed=0, shuffle=False, drop_last=False)
        return list(DataLoader(ds, batch_sampler=sampler, num_workers=workers))

    for x, y in zip(batches(local, 0), batches(remote, 2), strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_a_missing_or_unreachable_part_names_the_url(served, monkeypatch):
    _, base, _ = served
    monkeypatch.setattr(shardset, "RETRY_PAUSES_S", (0.01,))
    with pytest.raises(ShardSetError, match=rf"^{base}/gone/manifest\.json: cannot read"):
        open_shard_set(f"{base}/gone").fingerprint()
    with pytest.raises(ShardSetError, match=rf"^{base}/gone/manifest\.json: cannot read"):
        open_shard_set(f"{base}/gone").refs("train")    # no index, and no manifest to rebuild it from
    dead = f"http://127.0.0.1:{free_port()}/part-0"
    with pytest.raises(ShardSetError, match=rf"^{dead}/manifest\.json: cannot read after 2 attempts"):
        open_shard_set(dead).fingerprint()
    with pytest.raises(ShardSetError, match=r"^s3://bucket/p/manifest\.json: cannot open the s3:// scheme"):
        if importlib.util.find_spec("s3fs"):
            pytest.skip("s3fs is installed")
        open_shard_set("s3://bucket/p").fingerprint()
    with pytest.raises(ShardSetError, match=rf"^{base}/nope\.json: cannot read"):
        open_shard_set(f"{base}/nope.json")


def test_a_server_without_range_support_still_serves_the_right_bytes(plain_served, smoke_shards, caplog):
    local = WindowDataset(smoke_shards, "val", VIEW, None, 0)
    remote = WindowDataset(f"{plain_served}/part-0", "val", VIEW, None, 0)
    with caplog.at_level("WARNING", logger="tvts.data.shardset"):
        assert all(remote.read(i) == local.read(i) for i in range(len(local)))
    assert caplog.text.count("ignores HTTP Range requests") == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="tvts.data.shardset"):            # no index: the tars streamed
        rebuilt = open_shard_set(f"{plain_served}/noindex").refs("val")
    assert "rebuilding the index from the tar headers" in caplog.text
    assert [(r.key, r.members) for r in rebuilt] == [(r.key, r.members) for r in local.refs]


@pytest.mark.parametrize("server", ["served", "plain_served"])
def test_training_from_http_shards_is_bit_identical_to_local_shards(server, smoke_shards, tmp_path, request):
    """Against a Range-capable server, and `python -m http.server` (which sends whole files)."""
    from test_train import final_weights, run_pretrain

    base = request.getfixturevalue(server)
    base = base[1] if server == "served" else base
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["pretrain"]["optim"] |= {"epochs": 1, "decay_epochs": [1]}
    cfg["pretrain"]["data"] |= {"batch_size": 2, "eval_batch_size": 4}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert run_pretrain(smoke_shards, tmp_path / "local", path) == 0
    assert run_pretrain(f"{base}/part-0", tmp_path / "http", path) == 0
    a, b = final_weights(tmp_path / "local"), final_weights(tmp_path / "http")
    assert len(a) > 10 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    local, remote = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "http"))
    assert remote["inputs"]["shards"] == f"{base}/part-0"
    assert remote["inputs"]["shards_fingerprint"] == local["inputs"]["shards_fingerprint"]  # the same data
    assert remote["history"] == local["history"]
    from tvts.stages import select_ckpt                                 # the same data by another path:
    cfg = json.dumps({"select": {"register": False, "metric": "sort_exact"}})   # the trainer's scores reused
    assert select_ckpt.main(["--pretrain", str(tmp_path / "http"), "--shards", str(smoke_shards),
                             "--out", str(tmp_path / "select"), "--exp", "t", "--config-json", cfg]) == 0
    selection = json.loads((tmp_path / "select/selection.json").read_text())
    assert set(selection["scores_from"].values()) == {"trainer"}


def test_a_transient_network_error_is_retried(served, smoke_shards, monkeypatch, caplog):
    _, base, _ = served
    monkeypatch.setattr(shardset, "RETRY_PAUSES_S", (0.01, 0.01))
    ds = WindowDataset(f"{base}/part-0", "val", VIEW, None, 0)
    fs = ds._reader.remote.fs(base)
    real, calls = fs.cat_file, []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) < 3:
            raise ConnectionResetError("Connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(fs, "cat_file", flaky)
    with caplog.at_level("WARNING", logger="tvts.data.shardset"):
        assert ds.read_field(0, "json") == WindowDataset(smoke_shards, "val", VIEW, None, 0).read_field(0, "json")
    assert len(calls) == 3 and caplog.text.count("retrying") == 2


def test_pretrain_names_an_unreachable_shard_url(tmp_path, monkeypatch, caplog):
    """Unreachable past the retries: the job exits 75, to be retried later (tests/test_faults_shards.py)."""
    from tvts.stages import pretrain

    monkeypatch.setattr(shardset, "RETRY_PAUSES_S", ())
    dead = f"http://127.0.0.1:{free_port()}/part-0"
    path = tmp_path / "cfg.yaml"
    path.write_text(SMOKE.read_text())
    args = ["--shards", dead, "--out", str(tmp_path / "out"), "--config", str(path), "--exp", "t", "--cpu"]
    assert pretrain.main(args) == 75
    assert f"{dead}/manifest.json: cannot read after 1 attempts" in caplog.text


def test_select_reuses_trainer_scores_for_the_same_data_wherever_it_is_served(served, smoke_shards, tmp_path):
    from tvts.select import recorded_scores

    _, base, _ = served
    fingerprint = open_shard_set(smoke_shards).fingerprint()
    manifest = {"inputs": {"shards": str(smoke_shards), "shards_fingerprint": fingerprint},
                "history": [{"epoch": 0, "step": 2, "sort_exact": 0.5}]}
    assert recorded_scores(manifest, f"{base}/part-0") == {2: {"step": 2.0, "sort_exact": 0.5}}
    shutil.copytree(smoke_shards, tmp_path / "other")
    (tmp_path / "other/manifest.json").write_text("{}")                  # other data: scored afresh
    assert recorded_scores(manifest, tmp_path / "other") == {}
    legacy = {"inputs": {"shards": str(smoke_shards)}, "history": manifest["history"]}  # no fingerprint: by path
    assert recorded_scores(legacy, smoke_shards) and not recorded_scores(legacy, tmp_path / "other")
