"""Shard faults: every tar fault names the shard, the member and the cause; a shard replaced after
its index was read is reported as a stale index; an HTTP outage past the retries exits 75."""
from __future__ import annotations

import io as stdio
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SMOKE
from test_shardset import VIEW, free_port, served, www  # noqa: F401 - the HTTP server fixtures
from tvts.data import shards, shardset
from tvts.data.shards import ShardError
from tvts.data.shardset import StaleIndex
from tvts.train.data import WindowDataset

FRAME = shards.encode_jpeg(np.zeros((8, 8, 3), np.uint8), 90)


def write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
                continue
            info = tarfile.TarInfo(m[0])
            info.size = len(m[1])
            tar.addfile(info, stdio.BytesIO(m[1]))
    return path


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


GOOD = [("k_w000.json", b'{"clips": []}'), ("k_w000.f000.jpg", FRAME)]


def every_reader(path: Path) -> list:
    """The three ways a shard is read: streamed samples, the index scan, the dataset's reads."""
    return [lambda: list(shards.iter_tar_samples(path)), lambda: shards.tar_members(path),
            lambda: shards.decode_sample(next(shards.iter_tar_samples(path)), 1, where=path)]


def test_a_truncated_tar_names_the_shard_member_and_cause(tmp_path):
    """Finding: `tarfile.ReadError: unexpected end of data`, no shard named."""
    path = write_tar(tmp_path / "train-000000.tar", GOOD + [("k_w001.json", b'{"clips": []}' * 200)])
    (_, members), = [m for m in shards.tar_members(path) if m[0] == "k_w001"]
    offset, _ = members["json"]
    path.write_bytes(path.read_bytes()[:offset + 100])  # cut inside k_w001.json's data
    for read in every_reader(path)[:2]:
        with pytest.raises(ShardError, match=rf"^{path}: k_w001.json: truncated tar \(unexpected end of data\)$"):
            read()
    path.write_bytes(b"")
    with pytest.raises(ShardError, match=rf"^{path}: <first member>: not a readable tar \("):
        shards.tar_members(path)


@pytest.mark.parametrize("member,expected", [
    (link("k_w000.f001.jpg", "/etc/passwd", tarfile.SYMTYPE),
     r"k_w000.f001.jpg: link member \(symlink to '/etc/passwd'\); a shard holds files only"),
    (link("k_w000.f001.jpg", "k_w000.f000.jpg", tarfile.LNKTYPE),
     r"k_w000.f001.jpg: link member \(hardlink to 'k_w000.f000.jpg'\)"),
    (("../k_w000.f001.jpg", FRAME), r"../k_w000.f001.jpg: path outside the shard \(absolute or ../\)"),
    (("/tmp/k_w000.f001.jpg", FRAME), r"/tmp/k_w000.f001.jpg: path outside the shard"),
])
def test_link_and_outside_members_are_named_with_their_cause(tmp_path, member, expected):
    """Finding: `…/train-000000.tar: : no json member`: an empty member name and no cause."""
    path = write_tar(tmp_path / "train-000000.tar", GOOD + [member])
    for read in every_reader(path):
        with pytest.raises(ShardError, match=rf"^{path}: {expected}"):
            read()


def test_a_missing_member_is_named(tmp_path):
    path = write_tar(tmp_path / "train-000000.tar", GOOD[1:])
    with pytest.raises(ShardError, match=rf"^{path}: k_w000.json: missing member \(the sample has no json\)$"):
        every_reader(path)[2]()


def replace_shard(folder: Path) -> Path:
    """Overwrite the first val shard with another shard's bytes, under the same name."""
    val = shards.list_shards(folder, "val")
    other = shards.list_shards(folder, "train")[0]
    shutil.copyfile(other, val[0])
    return val[0]


def test_a_shard_replaced_after_its_index_was_read_is_a_stale_index(smoke_shards, tmp_path):
    """Finding: over HTTP it read as "invalid JSON", which sent the user looking for a broken file."""
    folder = tmp_path / "shards"
    shutil.copytree(smoke_shards, folder)
    ds = WindowDataset(folder, "val", VIEW, None, 0)
    ds.read(0)
    shard = replace_shard(folder)
    with pytest.raises(StaleIndex, match=rf"^{shard}: stale index: {ds.refs[0].key}.f000.jpg \(\d+ bytes at offset "
                                         r"\d+\) is not there any more \(.*\): the shard changed after its index "
                                         "was read; run again to read it anew$"):
        ds.read(0)


def test_a_remote_shard_replaced_after_its_index_was_read_is_a_stale_index(served, tmp_path):  # noqa: F811
    www_root, base, _ = served
    shutil.copytree(www_root / "part-0", www_root / "stale")
    ds = WindowDataset(f"{base}/stale", "val", VIEW, None, 0)
    ds.read(0)
    name = replace_shard(www_root / "stale").name
    with pytest.raises(StaleIndex, match=rf"^{base}/stale/{name}: stale index: "):
        ds.read(0)


def test_an_http_outage_past_the_retries_exits_75_naming_the_url(served, tmp_path, monkeypatch, caplog):  # noqa: F811
    """Finding: a 10 s outage ended the job with exit 1 after two retries; 75 lets the scheduler retry it."""
    from tvts.stages import pretrain

    _, base, _ = served
    monkeypatch.setattr(shardset, "RETRY_PAUSES_S", (0.01, 0.01))
    real = shardset.Remote.read

    def down_for_tars(self, url, start=None, size=None):  # the index was read; then the server goes away
        if url.endswith(".tar"):
            raise shardset.Unavailable(f"{url}: cannot read after 3 attempts (ClientConnectorError: refused)")
        return real(self, url, start, size)

    monkeypatch.setattr(shardset.Remote, "read", down_for_tars)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(yaml.safe_load(SMOKE.read_text())))
    code = pretrain.main(["--shards", f"{base}/part-0", "--out", str(tmp_path / "out"), "--config", str(cfg),
                          "--exp", "t", "--cpu"])
    assert code == 75
    assert f"{base}/part-0/" in caplog.text and "cannot read after 3 attempts" in caplog.text
    assert "exiting with 75 (retry later)" in caplog.text


def test_the_retries_end_in_unavailable(monkeypatch):
    """The real retry loop, against a port nothing listens on."""
    monkeypatch.setattr(shardset, "RETRY_PAUSES_S", (0.01, 0.01))
    dead = f"http://127.0.0.1:{free_port()}/part-0/train-000000.tar"
    with pytest.raises(shardset.Unavailable, match=rf"^{dead}: cannot read after 3 attempts"):
        shardset.Remote().read(dead, 0, 10)
