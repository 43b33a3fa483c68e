"""Post-pretraining pair readers (WebVid tables, CC3M TSV and img2dataset tars) on tiny real files.

Every bad input a real download holds has its own test: a missing image, a truncated JPEG, a
zero-length mp4, an empty caption, a 10k-character caption, a duplicate id, a row with too few
columns, a byte-order mark.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tvts.data.formats.cc3m import read_cc3m
from tvts.data.formats.common import MAX_CAPTION_CHARS, FormatError, PairItem, official_sample
from tvts.data.formats.webvid import read_webvid
from tvts.io import Rejects

BOM = "\ufeff"


def jpeg(seed: int = 0, size: tuple[int, int] = (24, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def mp4(path: Path, frames: int = 4) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8, options={"preset": "ultrafast", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return mp4(tmp_path_factory.mktemp("clip") / "c.mp4").read_bytes()


def webvid_tree(root: Path, clip: bytes, names: list[str]) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(clip)
    return root


# ----------------------------------------------------------------------------- WebVid
def test_webvid_tsv_layout(tmp_path, clip):
    videos = webvid_tree(tmp_path / "WebVid" / "train", clip, ["000001_000050/11.mp4", "000001_000050/12.mp4"])
    table = write(tmp_path / "webvid_train.tsv", "caption\tpath\n"
                  'a dog runs\t000001_000050/11\n"quoted, with\ttab"\t000001_000050/12\n')
    rejects = Rejects("shard_pairs")
    items = read_webvid(table, videos, rejects)
    assert items == [PairItem("000001_000050/11", "a dog runs", "video", str(videos / "000001_000050/11.mp4")),
                     PairItem("000001_000050/12", "quoted, with\ttab", "video", str(videos / "000001_000050/12.mp4"))]
    assert len(rejects) == 0


def test_webvid_release_csv_layout(tmp_path, clip):
    videos = webvid_tree(tmp_path / "videos", clip, ["000001_000050/7.mp4", "000051_000100/8.mp4"])
    table = write(tmp_path / "results_2M_train.csv", "videoid,contentUrl,duration,page_dir,name\n"
                  '7,https://x/7.mp4,PT00H00M10S,000001_000050,"Aerial, city at night"\n'
                  "8,https://x/8.mp4,PT00H00M12S,000051_000100,Waves\n")
    items = read_webvid(table, videos, Rejects("shard_pairs"))
    assert [(i.id, i.caption, Path(i.path).relative_to(videos).as_posix()) for i in items] == [
        ("7", "Aerial, city at night", "000001_000050/7.mp4"), ("8", "Waves", "000051_000100/8.mp4")]


def test_webvid_missing_and_zero_length_and_unreadable_videos_are_counted(tmp_path, clip):
    videos = webvid_tree(tmp_path / "train", clip, ["p/ok.mp4"])
    (videos / "p" / "empty.mp4").write_bytes(b"")
    (videos / "p" / "junk.mp4").write_bytes(b"not an mp4 at all" * 20)
    table = write(tmp_path / "webvid_train.tsv", "caption\tpath\nfine\tp/ok\nx\tp/gone\ny\tp/empty\nz\tp/junk\n"
                  "w\t../../etc/passwd\n")
    rejects = Rejects("shard_pairs")
    assert [i.id for i in read_webvid(table, videos, rejects)] == ["p/ok"]
    assert rejects.counts() == {"empty_video": 1, "missing_video": 1, "outside_root": 1, "video_unreadable": 1}
    assert {r["item"]: r["reason"] for r in rejects.rows}["p/empty"] == "empty_video"
    # without probing, the junk file passes (its decoder will catch it) but 0 bytes never does
    rejects = Rejects("shard_pairs")
    assert [i.id for i in read_webvid(table, videos, rejects, probe=False)] == ["p/ok", "p/junk"]
    assert rejects.counts() == {"empty_video": 1, "missing_video": 1, "outside_root": 1}


def test_webvid_empty_caption_duplicate_id_and_long_caption(tmp_path, clip):
    videos = webvid_tree(tmp_path / "train", clip, ["p/1.mp4", "p/2.mp4", "p/3.mp4"])
    long = "word " * 2000  # 10k characters
    table = write(tmp_path / "webvid_train.tsv", f"caption\tpath\n  \tp/1\nfirst\tp/2\nagain\tp/2\n{long}\tp/3\n")
    rejects = Rejects("shard_pairs")
    items = read_webvid(table, videos, rejects)
    assert [(i.id, i.caption) for i in items] == [("p/2", "first"), ("p/3", long[:MAX_CAPTION_CHARS].rstrip())]
    assert len(items[1].caption) <= MAX_CAPTION_CHARS < len(long)
    assert rejects.counts() == {"duplicate_id": 1, "empty_caption": 1}
    assert [r["item"] for r in rejects.rows] == ["p/1", "p/2"]


def test_webvid_rows_with_too_few_columns_name_file_and_line(tmp_path):
    table = write(tmp_path / "webvid_train.tsv", "caption\tpath\nok\tp/1\n\njust a caption\n")
    with pytest.raises(FormatError, match=r"webvid_train\.tsv:4:"):
        read_webvid(table, tmp_path, Rejects("shard_pairs"))
    csv_table = write(tmp_path / "results_2M_train.csv", "videoid,contentUrl,duration,page_dir,name\n7,u,d\n")
    with pytest.raises(FormatError, match=r"results_2M_train\.csv:2:"):
        read_webvid(csv_table, tmp_path, Rejects("shard_pairs"))


def test_webvid_tables_with_a_byte_order_mark(tmp_path, clip):
    """A BOM must not glue itself to the header (losing the release CSV's `videoid`) or a first id."""
    videos = webvid_tree(tmp_path / "videos", clip, ["d/7.mp4"])
    table = write(tmp_path / "results_2M_train.csv", BOM + "videoid,contentUrl,duration,page_dir,name\n7,u,d,d,Waves\n")
    assert [i.id for i in read_webvid(table, videos, Rejects("shard_pairs"))] == ["7"]
    tsv = write(tmp_path / "webvid_train.tsv", BOM + "caption\tpath\nWaves\td/7\n")
    assert [i.caption for i in read_webvid(tsv, videos, Rejects("shard_pairs"))] == ["Waves"]


def test_webvid_val_sample_is_the_rows_pandas_sample_keeps(tmp_path, clip):
    pd = pytest.importorskip("pandas")
    n = 1500
    rows = "".join(f"caption {i}\tp/{i}\n" for i in range(n))
    table = write(tmp_path / "webvid_val.tsv", "caption\tpath\n" + rows)
    official = pd.read_csv(table, sep="\t").sample(1000, random_state=0)
    assert official_sample(n, 1000) == official.index.tolist()
    videos = tmp_path / "val"
    for i in official.index[:3]:  # only a few exist: the sample is drawn before files are checked
        webvid_tree(videos, clip, [f"p/{i}.mp4"])
    rejects = Rejects("shard_pairs")
    items = read_webvid(table, videos, rejects, sample=1000)
    assert [i.caption for i in items] == official.iloc[:3, 0].tolist()
    assert rejects.counts() == {"missing_video": 997}
    assert official_sample(5, 1000) == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- CC3M TSV
def cc3m_tsv(tmp_path: Path, body: str, files: dict[str, bytes]) -> tuple[Path, Path]:
    images = tmp_path / "CC3M" / "training"
    for name, data in files.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(data)
    return write(tmp_path / "cc3m_train.tsv", "caption\timage\n" + body), images


def test_cc3m_tsv_layout(tmp_path):
    table, images = cc3m_tsv(tmp_path, "a red bus\t0001.jpg\nsunset over a lake\tsub/0002.jpg\n",
                             {"0001.jpg": jpeg(1), "sub/0002.jpg": jpeg(2)})
    items = list(read_cc3m(table, images, Rejects("shard_pairs")))
    assert items == [PairItem("0001.jpg", "a red bus", "image", str(images / "0001.jpg")),
                     PairItem("sub/0002.jpg", "sunset over a lake", "image", str(images / "sub/0002.jpg"))]


def test_cc3m_tsv_missing_truncated_and_empty_images_are_counted(tmp_path):
    whole = jpeg(3)
    table, images = cc3m_tsv(tmp_path, "ok\ta.jpg\ngone\tb.jpg\ncut\tc.jpg\nzero\td.jpg\n",
                             {"a.jpg": whole, "c.jpg": whole[: len(whole) // 2], "d.jpg": b""})
    rejects = Rejects("shard_pairs")
    assert [i.id for i in read_cc3m(table, images, rejects)] == ["a.jpg"]
    assert rejects.counts() == {"empty_image": 1, "image_unreadable": 1, "missing_image": 1}
    assert "truncated" in next(r["detail"] for r in rejects.rows if r["item"] == "c.jpg").lower()


def test_cc3m_a_jpeg_missing_only_its_last_bytes_is_caught(tmp_path):
    whole = jpeg(4)
    table, images = cc3m_tsv(tmp_path, "cut\tc.jpg\n", {"c.jpg": whole[:-2]})
    rejects = Rejects("shard_pairs")
    assert list(read_cc3m(table, images, rejects)) == []
    assert rejects.counts() == {"image_unreadable": 1}


def test_cc3m_tsv_captions_ids_columns_and_bom(tmp_path):
    long = "x" * 10_000
    table, images = cc3m_tsv(tmp_path, f"\ta.jpg\nfirst\tb.jpg\nagain\tb.jpg\n{long}\tc.jpg\n",
                             {n: jpeg(i) for i, n in enumerate(("a.jpg", "b.jpg", "c.jpg"))})
    rejects = Rejects("shard_pairs")
    assert [(i.id, len(i.caption)) for i in read_cc3m(table, images, rejects)] == [
        ("b.jpg", 5), ("c.jpg", MAX_CAPTION_CHARS)]
    assert rejects.counts() == {"duplicate_id": 1, "empty_caption": 1}
    write(table, BOM + "caption\timage\nfirst\tb.jpg\nno path here\n")
    items = read_cc3m(table, images, Rejects("shard_pairs"))
    assert next(items).id == "b.jpg"
    with pytest.raises(FormatError, match=r"cc3m_train\.tsv:3:"):
        next(items)
    with pytest.raises(ValueError, match="images folder"):
        next(read_cc3m(table, None, Rejects("shard_pairs")))


def test_cc3m_tsv_sample_matches_webvid_sampling(tmp_path):
    body = "".join(f"c{i}\t{i}.jpg\n" for i in range(12))
    table, images = cc3m_tsv(tmp_path, body, {f"{i}.jpg": jpeg(i) for i in range(12)})
    kept = [i.id for i in read_cc3m(table, images, Rejects("shard_pairs"), sample=5)]
    assert kept == [f"{i}.jpg" for i in official_sample(12, 5)]


# ----------------------------------------------------------------------------- CC3M img2dataset tars
def img2dataset_tar(path: Path, samples: list[dict[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            for ext, data in sample.items():
                if ext == "__key__":
                    continue
                info = tarfile.TarInfo(f"{sample['__key__'].decode()}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def sample(key: str, caption: str | None = "a caption", image: bytes | None = None,
           meta: dict | None = None) -> dict[str, bytes]:
    out = {"__key__": key.encode()}
    if image is not None:
        out["jpg"] = image
    if caption is not None:
        out["txt"] = caption.encode()
    out["json"] = json.dumps({"key": key, "status": "success"} | (meta or {})).encode()
    return out


def test_img2dataset_tars(tmp_path):
    good = jpeg(5)
    tars = tmp_path / "cc3m_wds"
    img2dataset_tar(tars / "00000.tar", [sample("000000000", "a cat", good),
                                         sample("000000001", None, good, {"caption": "from the json"})])
    img2dataset_tar(tars / "00001.tar", [sample("000010000", BOM + "a dog", good)])
    rejects = Rejects("shard_pairs")
    items = list(read_cc3m(tars, None, rejects))
    assert [(i.id, i.caption, i.kind, i.path) for i in items] == [
        ("000000000", "a cat", "image", ""), ("000000001", "from the json", "image", ""),
        ("000010000", "a dog", "image", "")]
    assert items[0].data == good and len(rejects) == 0
    assert [i.id for i in read_cc3m(tars / "00001.tar", None, Rejects("x"))] == ["000010000"]
    assert [i.id for i in read_cc3m([tars / "00001.tar", tars / "00000.tar"], None, Rejects("x"))] == [
        "000010000", "000000000", "000000001"]


def test_img2dataset_bad_samples_are_counted(tmp_path):
    good = jpeg(6)
    tar = img2dataset_tar(tmp_path / "00000.tar", [
        sample("0", "fine", good),
        sample("1", "no image"),                                    # missing image
        sample("2", "cut", good[: len(good) // 3]),                 # truncated JPEG
        sample("3", "   ", good),                                   # empty caption
        sample("4", "x" * 10_000, good),                            # 10k characters: cut
        sample("0", "again", good),                                 # duplicate key
        sample("5", "lost", good, {"status": "failed_to_download", "error_message": "HTTP 404"}),
        {"__key__": b"6", "jpg": good, "txt": b"\xff\xfe bad", "json": b"{}"},
        {"__key__": b"7", "jpg": good, "txt": b"ok", "json": b"{not json"},
    ])
    rejects = Rejects("shard_pairs")
    items = list(read_cc3m([tar, tmp_path / "gone.tar"], None, rejects))
    assert [(i.id, len(i.caption)) for i in items] == [("0", 4), ("4", MAX_CAPTION_CHARS)]
    assert rejects.counts() == {"bad_caption": 1, "bad_json": 1, "duplicate_id": 1, "empty_caption": 1,
                                "failed_download": 1, "image_unreadable": 1, "missing_image": 1, "missing_tar": 1}
    assert next(r for r in rejects.rows if r["reason"] == "failed_download")["detail"] == "HTTP 404"


def test_a_truncated_tar_counts_its_unread_rest(tmp_path):
    good = jpeg(7)
    tar = img2dataset_tar(tmp_path / "00000.tar", [sample(str(i), "c", good) for i in range(4)])
    data = tar.read_bytes()
    members = tarfile.open(tar).getmembers()
    cuts = {"inside a member's data": members[5].offset_data + 3,     # the second sample's .txt
            "inside a header": members[6].offset + 100,
            "between samples": members[6].offset}                     # the third sample's first header
    for where, cut in cuts.items():
        tar.write_bytes(data[:cut])
        rejects = Rejects("shard_pairs")
        items = list(read_cc3m(tar, None, rejects))
        # the second sample may go on past the cut, so it is counted with the rest, not passed on
        assert [i.id for i in items] == ["0"], where
        assert rejects.counts() == {"unreadable_tar": 1}, where


def test_a_table_that_is_not_utf8_names_file_and_line(tmp_path):
    table = tmp_path / "webvid_train.tsv"
    table.write_bytes(b"caption\tpath\nok\tp/1\ncaf\xe9\tp/2\n" + b"more\tp/3\n" * 5000)
    with pytest.raises(FormatError, match=r"webvid_train\.tsv:3: not UTF-8"):
        read_webvid(table, tmp_path, Rejects("shard_pairs"))
