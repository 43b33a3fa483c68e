"""Downstream dataset readers: tiny files in each exact format, written into tmp_path.

Videos are empty placeholder files, since readers only check that they exist. Each `make_*`
builds one dataset with exactly one listed video left off disk, so every reader's `missing`
accounting is tested by the same parametrized test.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tvts.data.formats import CLASSIFICATION, READERS, RETRIEVAL, read_split
from tvts.data.formats.common import FormatError, read_json_list

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def raises_at(filename: str, line: int | None):
    """Expect a FormatError naming `filename` and, if given, its 1-based line."""
    where = re.escape(filename) + (f":{line}:" if line is not None else "")
    return pytest.raises(FormatError, match=where)


# ----------------------------------------------------------------------------- builders
def make_ssv2(root: Path) -> Path:
    write(root / "something-something-v2-labels.json",
          json.dumps({"Moving something up": "1", "Holding something next to something": "0"}))
    entries = [{"id": "11", "label": "Moving a cup up", "template": "Moving [something] up",
                "placeholders": ["a cup"]},
               {"id": "12", "label": "Holding a pen next to a cup",
                "template": "Holding [something] next to [something]", "placeholders": ["a pen", "a cup"]},
               {"id": "13", "label": "Moving a pen up", "template": "Moving [something] up",
                "placeholders": ["a pen"]}]
    write(root / "train.json", json.dumps(entries, indent=2))
    write(root / "validation.json", json.dumps(entries[:1], indent=2))
    touch(*(root / "20bn-something-something-v2" / f"{i}.webm" for i in ("11", "12")))  # 13 missing
    return root


def make_ssv2_list(root: Path) -> Path:
    write(root / "train.csv", "11.webm 1\n12.webm 0\n\n13.webm 1\n")
    write(root / "val.csv", "11.webm 1\n")
    touch(*(root / "20bn-something-something-v2" / f"{i}.webm" for i in ("11", "12")))
    return root


K400_HEADER = "label,youtube_id,time_start,time_end,split\n"


def make_kinetics400(root: Path) -> Path:
    write(root / "annotations" / "train.csv", K400_HEADER + "riding a bike,abc,10,20,train\n"
          "abseiling,def,0,10,train\nabseiling,ghi,5,15,train\n")
    write(root / "annotations" / "val.csv", K400_HEADER + "riding a bike,xyz,1,11,val\n")
    touch(root / "train" / "abc_000010_000020.mp4",  # flat
          root / "train" / "abseiling" / "def_000000_000010.mp4",  # per-class folder
          root / "val" / "riding_a_bike" / "xyz_000001_000011.mp4")  # per-class, underscores
    return root


def make_ucf101(root: Path) -> Path:
    lists = root / "ucfTrainTestlist"
    write(lists / "classInd.txt", "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    write(lists / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
          "HandstandPushups/v_HandStandPushups_g08_c01.avi 2\nApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 1\n")
    write(lists / "trainlist02.txt", "HandstandPushups/v_HandStandPushups_g01_c01.avi 2\n")
    write(lists / "testlist01.txt", "HandstandPushups/v_HandStandPushups_g01_c01.avi\n")
    videos = root / "UCF-101"
    touch(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi",
          videos / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi",
          videos / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi")
    return root


def make_hmdb51(root: Path) -> Path:
    splits = root / "testTrainMulti_7030_splits"
    write(splits / "wave_test_split1.txt", "w1.avi 1 \nw2.avi 2 \nw3.avi 0 \nw4.avi 1 \n")
    write(splits / "brush_hair_test_split1.txt", "b1.avi 1 \nb2.avi 2 \n")
    write(splits / "wave_test_split2.txt", "w1.avi 2\nw2.avi 1\n")
    write(splits / "brush_hair_test_split2.txt", "b1.avi 2\nb2.avi 1\n")
    touch(*(root / "videos" / "wave" / f"w{i}.avi" for i in (1, 2, 3)),
          *(root / "videos" / "brush_hair" / f"b{i}.avi" for i in (1, 2)))  # w4 missing
    return root


def make_msrvtt(root: Path) -> Path:
    annotations = [{"image_id": "video0", "caption": "a dog runs", "id": 0},
                   {"image_id": "video1", "caption": "a cat sleeps", "id": 1},
                   {"image_id": "video0", "caption": "a dog is running ", "id": 2},
                   {"image_id": "video2", "caption": "rain falls", "id": 3},
                   {"image_id": "video9", "caption": "a car", "id": 4}]
    write(root / "annotation" / "MSR_VTT.json", json.dumps({"annotations": annotations}))
    lists = root / "high-quality" / "structured-symlinks"
    write(lists / "train_list_jsfusion.txt", "video0\nvideo1\nvideo2\n")
    write(lists / "val_list_jsfusion.txt", "video9\n")
    touch(*(root / "videos" / "all" / f"video{i}.mp4" for i in (0, 1, 9)))  # video2 missing
    return root


def make_didemo(root: Path) -> Path:
    moments = [{"video": "a_1.mov", "description": "A man walks in.", "times": [[0, 0]]},
               {"video": "b_2.avi", "description": "A dog barks.", "times": [[1, 2]]},
               {"video": "a_1.mov", "description": "He sits down.", "times": [[2, 3]]},
               {"video": "c_3.m4v", "description": "Nothing.", "times": [[0, 1]]}]
    write(root / "train_data.json", json.dumps(moments, indent=1))
    write(root / "test_data.json", json.dumps(moments[1:2], indent=1))
    touch(root / "videos" / "a_1.mov", root / "videos" / "b_2.mp4")  # re-encoded; c_3 missing
    return root


def make_msvd(root: Path) -> Path:
    write(root / "AllVideoDescriptions.txt", "# MSVD descriptions\n#\n-4wsuPCjDBc_5_15 a squirrel eats\n"
          "-4wsuPCjDBc_5_15 a squirrel is eating a nut\nabc_1_9\ta man sings\nzzz_0_4 a boat\n")
    write(root / "train_list.txt", "-4wsuPCjDBc_5_15\nabc_1_9\n")
    write(root / "test_list.txt", "zzz_0_4\n")
    touch(root / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi", root / "YouTubeClips" / "zzz_0_4.avi")
    return root


LSMDC_CLIP = "0001_American_Beauty_00.00.51.926-00.00.54.129"


def make_lsmdc(root: Path) -> Path:
    rows = [f"{LSMDC_CLIP}\t00.00.51.926\t00.00.54.129\t00.00.51.000\t00.00.55.000\tSOMEONE looks up.",
            f"{LSMDC_CLIP}\t00.00.51.926\t00.00.54.129\t00.00.51.000\t00.00.55.000\tSomeone smiles.",
            "0002_Up_01.02.03.000-01.02.04.000\t1\t2\t1\t2\tA house flies."]
    write(root / "LSMDC16_annos_training.csv", "\n".join(rows) + "\n")
    write(root / "LSMDC16_challenge_1000_publictect.csv", rows[0] + "\n")
    touch(root / "videos" / "0001_American_Beauty" / f"{LSMDC_CLIP}.avi")  # 0002_Up clip missing
    return root


BUILDERS = {"ssv2": make_ssv2, "ssv2_list": make_ssv2_list, "kinetics400": make_kinetics400,
            "ucf101": make_ucf101, "hmdb51": make_hmdb51, "msrvtt": make_msrvtt,
            "didemo": make_didemo, "msvd": make_msvd, "lsmdc": make_lsmdc}
# (items found, id of the one missing video) of each builder's train split
EXPECTED_TRAIN = {"ssv2": (2, "13"), "ssv2_list": (2, "13"), "kinetics400": (2, "ghi_000005_000015"),
                  "ucf101": (2, "v_ApplyEyeMakeup_g09_c01"), "hmdb51": (2, "w4"), "msrvtt": (2, "video2"),
                  "didemo": (2, "c_3.m4v"), "msvd": (1, "abc_1_9"), "lsmdc": (1, "0002_Up_01.02.03.000-01.02.04.000")}


# ----------------------------------------------------------------------------- every format
def test_registry_covers_every_format():
    assert set(CLASSIFICATION) | set(RETRIEVAL) == set(READERS) == set(BUILDERS)
    assert not set(CLASSIFICATION) & set(RETRIEVAL)


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_missing_video_is_counted_not_dropped(tmp_path, fmt):
    vs = read_split(fmt, BUILDERS[fmt](tmp_path), "train")
    n_items, missing_id = EXPECTED_TRAIN[fmt]
    assert (vs.dataset, vs.split, len(vs.items)) == (fmt, "train", n_items)
    assert [m.video_id for m in vs.missing] == [missing_id]
    assert vs.missing_counts() == {"missing_video": 1}
    assert missing_id not in {item.video_id for item in vs.items}
    assert all(item.path.is_file() for item in vs.items)
    if fmt in CLASSIFICATION:
        assert vs.classes and all(0 <= item.label < len(vs.classes) and not item.captions for item in vs.items)
    else:
        assert not vs.classes and all(item.label == -1 and item.captions for item in vs.items)


def test_unknown_format_split_or_option_names_the_allowed_values(tmp_path):
    with pytest.raises(ValueError, match="allowed: ssv2, ssv2_list, kinetics400"):
        read_split("ssv3", tmp_path, "train")
    with pytest.raises(ValueError, match="allowed: train, test"):
        read_split("ssv2", tmp_path, "validation")
    with pytest.raises(ValueError, match="allowed: videos"):
        read_split("ssv2", make_ssv2(tmp_path), "train", video_dir="x")


# ----------------------------------------------------------------------------- classification
def test_ssv2_labels_from_template_and_split_files(tmp_path):
    root = make_ssv2(tmp_path)
    train = read_split("ssv2", root, "train")
    assert train.classes == ("Holding something next to something", "Moving something up")
    assert [(i.video_id, i.label) for i in train.items] == [("11", 1), ("12", 0)]
    assert train.items[0].path == root / "20bn-something-something-v2" / "11.webm"
    assert [i.video_id for i in read_split("ssv2", root, "test").items] == ["11"]


def test_ssv2_videos_option_and_errors(tmp_path):
    root = make_ssv2(tmp_path)
    (root / "20bn-something-something-v2").rename(root / "webm")
    assert len(read_split("ssv2", root, "train", videos="webm").items) == 2
    entries = json.loads((root / "train.json").read_text())
    entries[2]["template"] = "Juggling [something]"
    write(root / "train.json", json.dumps(entries, indent=2))
    starts = [n for n, text in enumerate((root / "train.json").read_text().splitlines(), 1) if text == "  {"]
    with raises_at("train.json", starts[2]):  # the third entry's line
        read_split("ssv2", root, "train")
    write(root / "validation.json", '[\n  {"id": "1",\n  "template": }\n]')
    with raises_at("validation.json", 3):
        read_split("ssv2", root, "test")


def test_json_list_lines_point_at_each_entry(tmp_path):
    path = write(tmp_path / "x.json", '[\n {"a": 1},\n\n {"b": [\n 2]}, 3\n]')
    assert read_json_list(path) == [(2, {"a": 1}), (4, {"b": [2]}), (5, 3)]
    with raises_at("x.json", 1):
        read_json_list(write(tmp_path / "x.json", '{"a": 1}'))


def test_ssv2_list_labels_classes_and_txt_fallback(tmp_path):
    root = make_ssv2_list(tmp_path)
    train = read_split("ssv2_list", root, "train", num_classes=2)
    assert train.classes == ("class_0", "class_1")
    assert [(i.video_id, i.label) for i in train.items] == [("11", 1), ("12", 0)]
    write(root / "something-something-v2-labels.json", json.dumps({"B": "1", "A": "0"}))
    (root / "val.csv").rename(root / "val.txt")
    test = read_split("ssv2_list", root, "test")
    assert test.classes == ("A", "B") and [i.label for i in test.items] == [1]
    write(root / "train.csv", "11.webm 1\n12.webm two\n")
    with raises_at("train.csv", 2):
        read_split("ssv2_list", root, "train")
    write(root / "train.csv", "11.webm 5\n")
    with raises_at("train.csv", 1):
        read_split("ssv2_list", root, "train")


def test_ssv2_list_reads_the_official_tvts_list_names_and_a_named_list(tmp_path):
    root = tmp_path / "sthv2"
    write(root / "sthv2_train_list_videos.txt", "11.webm 1\n12.webm 0\n")
    write(root / "sthv2_val_list_videos.txt", "12.webm 0\n")
    touch(*(root / "20bn-something-something-v2" / f"{i}.webm" for i in ("11", "12")))
    assert [i.video_id for i in read_split("ssv2_list", root, "train", num_classes=2).items] == ["11", "12"]
    assert [i.video_id for i in read_split("ssv2_list", root, "test", num_classes=2).items] == ["12"]
    write(root / "lists" / "mine.txt", "11.webm 1\n")
    named = read_split("ssv2_list", root, "test", num_classes=2, list_file="lists/mine.txt")
    assert [i.video_id for i in named.items] == ["11"]
    with pytest.raises(FormatError, match="no list file: looked for val.csv, val.txt, sthv2_val_list_videos.txt"):
        read_split("ssv2_list", tmp_path / "empty", "test")


def test_a_named_list_comes_from_the_dataset_config(tmp_path):
    from tvts.config import ConfigError, from_dict
    from tvts.eval.config import DatasetSpec, load_dataset_split

    root = tmp_path / "sthv2"
    write(root / "val_split.txt", "11.webm 1\n")
    touch(root / "20bn-something-something-v2" / "11.webm")
    spec = from_dict(DatasetSpec, {"format": "ssv2_list", "root": str(root), "lists": {"test": "val_split.txt"}},
                     "eval.datasets.ssv2")
    assert [i.video_id for i in load_dataset_split(spec, "test").items] == ["11"]
    with pytest.raises(ConfigError, match="eval.datasets.k400.lists: only the ssv2_list format"):
        from_dict(DatasetSpec, {"format": "kinetics400", "root": "x", "lists": {"test": "a"}}, "eval.datasets.k400")


def test_kinetics_classes_from_train_csv_and_both_layouts(tmp_path):
    root = make_kinetics400(tmp_path)
    train = read_split("kinetics400", root, "train")
    assert train.classes == ("abseiling", "riding a bike")
    assert [(i.video_id, i.label) for i in train.items] == [("abc_000010_000020", 1), ("def_000000_000010", 0)]
    test = read_split("kinetics400", root, "test")
    assert test.classes == train.classes and [i.label for i in test.items] == [1]
    assert test.items[0].path == root / "val" / "riding_a_bike" / "xyz_000001_000011.mp4"


def test_kinetics_validate_csv_name_and_errors(tmp_path):
    root = make_kinetics400(tmp_path)
    (root / "annotations" / "val.csv").rename(root / "validate.csv")
    assert len(read_split("kinetics400", root, "test").items) == 1
    write(root / "validate.csv", K400_HEADER + "riding a bike,xyz,1,11,val\nskydiving,q,1,2,val\n")
    with raises_at("validate.csv", 3):  # a class the train CSV does not have
        read_split("kinetics400", root, "test")
    write(root / "annotations" / "train.csv", K400_HEADER + "abseiling,def,0,10,train\nabseiling,ghi,x,15,train\n")
    with raises_at("train.csv", 3):
        read_split("kinetics400", root, "train")
    write(root / "annotations" / "train.csv", "label,youtube_id,start,end\n")
    with raises_at("train.csv", 1):
        read_split("kinetics400", root, "train")


def test_ucf101_folds_and_labels(tmp_path):
    root = make_ucf101(tmp_path)
    train = read_split("ucf101", root, "train", fold=1)
    assert train.classes == ("ApplyEyeMakeup", "HandstandPushups")
    assert [i.label for i in train.items] == [0, 1]
    assert train.items[1].path == root / "UCF-101" / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi"
    assert [i.video_id for i in read_split("ucf101", root, "train", fold=2).items] == ["v_HandStandPushups_g01_c01"]
    test = read_split("ucf101", root, "test", fold=1)
    assert [(i.video_id, i.label) for i in test.items] == [("v_HandStandPushups_g01_c01", 1)]
    with pytest.raises(ValueError, match="fold"):
        read_split("ucf101", root, "train", fold=4)


def test_ucf101_malformed_lines(tmp_path):
    root = make_ucf101(tmp_path)
    lists = root / "ucfTrainTestlist"
    write(lists / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n\nApplyEyeMakeup/v_x.avi\n")
    with raises_at("trainlist01.txt", 3):  # train lines need the label
        read_split("ucf101", root, "train")
    write(lists / "testlist01.txt", "Skiing/v_Skiing_g01_c01.avi\n")
    with raises_at("testlist01.txt", 1):  # unknown class
        read_split("ucf101", root, "test")
    write(lists / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n")
    with raises_at("trainlist01.txt", 1):  # label disagrees with the folder
        read_split("ucf101", root, "train")
    write(lists / "classInd.txt", "1 ApplyEyeMakeup\nHandstandPushups\n")
    with raises_at("classInd.txt", 2):
        read_split("ucf101", root, "train")


def test_hmdb51_marks_select_split_and_fold(tmp_path):
    root = make_hmdb51(tmp_path)
    train = read_split("hmdb51", root, "train")
    assert train.classes == ("brush_hair", "wave")
    assert [(i.video_id, i.label) for i in train.items] == [("b1", 0), ("w1", 1)]
    assert [i.video_id for i in read_split("hmdb51", root, "test").items] == ["b2", "w2"]
    assert [i.video_id for i in read_split("hmdb51", root, "test", fold=2).items] == ["b1", "w1"]
    assert read_split("hmdb51", root, "train").items[1].path == root / "videos" / "wave" / "w1.avi"
    with pytest.raises(ValueError, match="fold"):
        read_split("hmdb51", root, "train", fold=0)
    write(root / "testTrainMulti_7030_splits" / "wave_test_split1.txt", "w1.avi 1\nw2.avi 3\n")
    with raises_at("wave_test_split1.txt", 2):
        read_split("hmdb51", root, "train")


# ----------------------------------------------------------------------------- retrieval
def test_msrvtt_captions_grouped_per_video(tmp_path):
    root = make_msrvtt(tmp_path)
    train = read_split("msrvtt", root, "train")
    assert [(i.video_id, i.captions) for i in train.items] == [
        ("video0", ("a dog runs", "a dog is running")), ("video1", ("a cat sleeps",))]
    assert [i.video_id for i in read_split("msrvtt", root, "test").items] == ["video9"]


def test_msrvtt_errors(tmp_path):
    root = make_msrvtt(tmp_path)
    write(root / "high-quality" / "structured-symlinks" / "val_list_jsfusion.txt", "video9\nvideo77\n")
    with raises_at("val_list_jsfusion.txt", 2):  # listed id without a caption
        read_split("msrvtt", root, "test")
    write(root / "annotation" / "MSR_VTT.json", json.dumps({"annotations": [{"image_id": "video0"}]}))
    with pytest.raises(FormatError, match=r"MSR_VTT\.json: annotations\[0\]"):
        read_split("msrvtt", root, "train")


def test_didemo_paragraphs_and_mp4_fallback(tmp_path):
    root = make_didemo(tmp_path)
    train = read_split("didemo", root, "train")
    assert [(i.video_id, i.captions) for i in train.items] == [
        ("a_1.mov", ("A man walks in. He sits down.",)), ("b_2.avi", ("A dog barks.",))]
    assert train.items[1].path == root / "videos" / "b_2.mp4"
    assert [i.video_id for i in read_split("didemo", root, "test").items] == ["b_2.avi"]
    write(root / "test_data.json", '[\n  {"video": "a.mov", "description": "x"},\n  {"video": "b.mov"}\n]')
    with raises_at("test_data.json", 3):
        read_split("didemo", root, "test")


def test_msvd_descriptions_and_errors(tmp_path):
    root = make_msvd(tmp_path)
    train = read_split("msvd", root, "train")
    assert [(i.video_id, i.captions) for i in train.items] == [
        ("-4wsuPCjDBc_5_15", ("a squirrel eats", "a squirrel is eating a nut"))]
    assert train.missing[0].path == root / "YouTubeClips" / "abc_1_9.avi"
    assert [i.captions for i in read_split("msvd", root, "test").items] == [("a boat",)]
    write(root / "AllVideoDescriptions.txt", "# header\nzzz_0_4 a boat\nzzz_0_4\n")
    with raises_at("AllVideoDescriptions.txt", 3):
        read_split("msvd", root, "test")


def test_lsmdc_sentences_and_movie_folders(tmp_path):
    root = make_lsmdc(tmp_path)
    train = read_split("lsmdc", root, "train")
    assert [(i.video_id, i.captions) for i in train.items] == [
        (LSMDC_CLIP, ("SOMEONE looks up.", "Someone smiles."))]
    assert train.missing[0].path == root / "videos" / "0002_Up" / "0002_Up_01.02.03.000-01.02.04.000.avi"
    assert len(read_split("lsmdc", root, "test").items) == 1
    write(root / "LSMDC16_challenge_1000_publictect.csv", f"{LSMDC_CLIP}\t1\t2\t1\t2\tok\n{LSMDC_CLIP} 1 2 bad\n")
    with raises_at("LSMDC16_challenge_1000_publictect.csv", 2):
        read_split("lsmdc", root, "test")


# ----------------------------------------------------------------------------- the demo corpus
@pytest.mark.skipif(not (DEMO / "ssv2").is_dir() or not (DEMO / "msrvtt").is_dir(),
                    reason="demo corpus not pulled (dvc pull)")
def test_reads_the_demo_corpus():
    counts = {(fmt, split): read_split(fmt, DEMO / fmt, split)
              for fmt in ("ssv2", "msrvtt") for split in ("train", "test")}
    assert {k: len(vs.items) for k, vs in counts.items()} == {
        ("ssv2", "train"): 2880, ("ssv2", "test"): 960, ("msrvtt", "train"): 90, ("msrvtt", "test"): 30}
    assert len(counts["ssv2", "train"].classes) == 12
    assert all(not vs.missing for vs in counts.values())


def test_every_text_reader_strips_a_utf8_byte_order_mark(tmp_path):
    """Files saved by Windows tools start with a BOM: the first entry must not lose its name."""
    from tvts.data.formats.common import load_json, read_lines
    from tvts.data.formats.yttemporal import read_video_list

    bom = "\ufeff"
    write(tmp_path / "list.txt", bom + "ApplyEyeMakeup/v_a.avi 1\n")
    assert read_lines(tmp_path / "list.txt") == [(1, "ApplyEyeMakeup/v_a.avi 1")]
    write(tmp_path / "a.json", bom + '{"A": "0"}')
    assert load_json(tmp_path / "a.json") == {"A": "0"}
    write(tmp_path / "l.json", bom + '[{"id": "1"}]')
    assert read_json_list(tmp_path / "l.json") == [(1, {"id": "1"})]
    write(tmp_path / "videos.tsv", bom + "Name\nsubset_0/data/abc.mp4\n")
    assert [e.video_id for e in read_video_list(tmp_path / "videos.tsv")] == ["abc"]
    root = make_kinetics400(tmp_path / "k400")
    csv_path = root / "annotations" / "train.csv"
    csv_path.write_text(bom + csv_path.read_text(encoding="utf-8"), encoding="utf-8")
    assert read_split("kinetics400", root, "train").classes


TEXT_SUFFIXES = (".txt", ".csv", ".json", ".tsv")


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_a_byte_order_mark_on_every_annotation_file_changes_nothing(tmp_path, fmt, split):
    """Files saved by Windows tools start with a BOM. Read whole, it would glue itself to the first
    entry (an SSV2 list's or an HMDB split's first video goes missing) or break the parse (the
    JSONs, the K400 header, UCF's classInd): every reader must read the same split either way."""
    plain = read_split(fmt, BUILDERS[fmt](tmp_path / "plain"), split)
    root = BUILDERS[fmt](tmp_path / "bom")
    annotations = [p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES and p.stat().st_size]
    assert annotations
    for path in annotations:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with_bom = read_split(fmt, root, split)
    assert summary(with_bom, root) == summary(plain, tmp_path / "plain")


def summary(vs, root: Path) -> tuple:
    """What a reader read, with paths relative to the dataset root (to compare two copies)."""
    items = [(i.video_id, i.path.relative_to(root), i.label, i.captions) for i in vs.items]
    return items, vs.classes, [m.video_id for m in vs.missing]


def test_max_test_videos_keeps_the_first_clips_of_the_test_split(tmp_path):
    from tvts.eval.config import DatasetSpec, load_dataset_split
    if not (DEMO / "ssv2").is_dir():
        pytest.skip("demo corpus not pulled (dvc pull)")
    spec = DatasetSpec("ssv2", str(DEMO / "ssv2"), max_videos=288, max_test_videos=96)
    train, test = load_dataset_split(spec, "train"), load_dataset_split(spec, "test")
    assert (len(train.items), len(test.items)) == (288, 96)
    # classes cycle with the clip index: the demo's subset is balanced, 24 / 8 a class
    assert set(np.bincount([i.label for i in test.items])) == {8}
    assert set(np.bincount([i.label for i in train.items])) == {24}
