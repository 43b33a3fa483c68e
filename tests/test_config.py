"""Typed configs: unknown keys and wrong types give one message naming the key."""
import re
from pathlib import Path

import pytest
import yaml

from tvts.config import ConfigError, from_dict, load_sections
from tvts.data.config import AlignConfig, ShardConfig, WindowConfig
from tvts.workflow_config import validate_workflow_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def test_defaults_and_values():
    cfg = from_dict(WindowConfig, {"k": 4, "clip_lengths": [3, 4]}, "windows")
    assert cfg.k == 4 and cfg.clip_lengths == (3, 4)


@pytest.mark.parametrize("cls,data,key", [
    (AlignConfig, {"band_mim": 3}, "align_asr.band_mim"),
    (AlignConfig, {"band_min": "four"}, "align_asr.band_min"),
    (ShardConfig, {"jpeg_quality": 1000}, "align_asr.jpeg_quality"),
    (WindowConfig, {"k": True}, "align_asr.k"),
])
def test_bad_key_named(cls, data, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        from_dict(cls, data, "align_asr")


@pytest.mark.parametrize("name", ["demo", "smoke", "paper"])
def test_shipped_configs_validate(name):
    config = yaml.safe_load((ROOT / f"config/{name}.yaml").read_text())
    validate_workflow_config(config, SCHEMA)
    load_sections({"align_asr": AlignConfig, "windows": WindowConfig, "shard_clips": ShardConfig},
                  config_path=str(ROOT / f"config/{name}.yaml"))


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["align_asr"].update(band_mim=3), "align_asr.band_mim: unknown key"),
    (lambda c: c["shard_clips"].update(short_side="big"), "shard_clips.short_side: expected int, got 'big'"),
    (lambda c: c.update(shard_clip={}), "shard_clip: unknown key"),
    (lambda c: c["demo"].update(n_vidoes=3), "demo.n_vidoes: unknown key"),
    (lambda c: c["windows"].update(k=1), "windows.k: must be >= 2"),
    (lambda c: c["select"].update(metric="top1"), "select.metric: must be one of"),
    (lambda c: c["align_asr"].update(outside_cost=0), "align_asr.outside_cost: must be > 0"),
    (lambda c: c["dag"].update(align_parts=0), "dag.align_parts: 0 is less than the minimum of 1"),
])
def test_schema_names_the_key(mutate, expected):
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_workflow_config(config, SCHEMA)
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_conda_env_matches_pyproject_pins():
    text = (ROOT / "pyproject.toml").read_text()
    bench = re.search(r"^bench = \[[^\]]*\]", text, re.M)  # bench-only extras stay out of the job env
    pins = set(re.findall(r'"([A-Za-z0-9_\-]+==[^"]+)"', text.replace(bench.group(0), "") if bench else text))
    env = yaml.safe_load((ROOT / "envs/tvts.yaml").read_text())
    pip = {p for d in env["dependencies"] if isinstance(d, dict) for p in d["pip"] if "==" in p}
    norm = lambda s: {p.lower().replace("_", "-") for p in s}  # noqa: E731
    assert norm(pins) - {"pytest==9.2.0"} <= norm(pip)


def test_pretrain_section_errors_name_the_nested_key():
    from tvts.config import ConfigError, from_dict
    from tvts.train.config import PretrainConfig

    with pytest.raises(ConfigError, match=r"pretrain\.model\.video\.dimm: unknown key"):
        from_dict(PretrainConfig, {"model": {"video": {"dimm": 3}}}, "pretrain")
    with pytest.raises(ConfigError, match=r"pretrain\.optim\.lr: expected float, got 'fast'"):
        from_dict(PretrainConfig, {"optim": {"lr": "fast"}}, "pretrain")
    with pytest.raises(ConfigError, match=r"pretrain\.init: must be random, mae:<path> or tvts:<path>"):
        from_dict(PretrainConfig, {"init": "imagenet"}, "pretrain")
    with pytest.raises(ConfigError, match=r"pretrain\.model\.video\.img_size: must be a multiple of patch_size"):
        from_dict(PretrainConfig, {"model": {"video": {"img_size": 100}}}, "pretrain")
    cfg = from_dict(PretrainConfig, {"optim": {"decay_epochs": [3]}, "model": {"text": {"pool": "mean"}}}, "pretrain")
    assert cfg.optim.decay_epochs == (3,) and cfg.model.text.pool == "mean" and cfg.model.video.dim == 768


def test_the_science_grid_runs_the_demos_protocol_at_a_smaller_budget():
    """`make science`'s `tvts-s<seed>`/`random-s<seed>` are `make run`'s `demo`/`random` with the same
    data stages, losses and evaluation recipes. Only the pretraining budget (epochs, with the lr
    decay one epoch before the end), the encoder's patches and mask ratio and the checkpoint
    selection (documented departures in config/science.yaml), the evaluated tasks (a subset of the
    demo's), the test set's size (the demo evaluates the first clips of the grid's sets) and the
    readouts (the grid adds the attentive probe) differ, so that the demo fits 20 min and the grid
    its budget (DataLoader workers aside: samples are seeded per sample, so they do not change results)."""
    demo, science = (yaml.safe_load((ROOT / f"config/{n}.yaml").read_text()) for n in ("demo", "science"))
    for section in ("data", "align_asr", "windows", "shard_clips"):
        assert demo[section] == science[section], section
    # the grid reads every method at its last checkpoint (the fixed-budget protocol), the demo its best
    assert science["select"] == {"metric": "step"} and demo["select"] == {"metric": "sort_exact"}

    def recipes(c):
        e = {k: v for k, v in c["eval"].items() if k not in ("tasks", "attentive")}
        e["datasets"] = {n: {k: v for k, v in d.items() if not k.startswith("max_")} for n, d in e["datasets"].items()}
        e["temporal"] = {k: v for k, v in e["temporal"].items() if k != "pools"}
        return e
    assert recipes(demo) == recipes(science)
    assert set(demo["eval"]["temporal"]["pools"]) <= set(science["eval"]["temporal"]["pools"])
    assert not any(k.startswith("max_") for k in science["eval"]["datasets"]["ssv2"])   # the whole test set
    assert all(demo["eval"]["tasks"][k] == v for k, v in science["eval"]["tasks"].items())
    # The grid's documented departures from the demo's model (config/science.yaml): 16 px patches with
    # the spatial position on time's scale, the temporal embedding on the image MAE's token scale, and
    # mask ratio 0.5; threads are the scheduler's business.
    departures = {"patch_size": 16, "pos_init_std": 1.0, "temporal_init_std": 8.0}
    assert {k: science["pretrain"]["model"]["video"][k] for k in departures} == departures
    assert science["pretrain"]["model"]["mask_ratio"] == 0.5 and demo["pretrain"]["model"]["mask_ratio"] == 0.75

    def protocol(c):
        p = {**c["pretrain"], "data": {k: v for k, v in c["pretrain"]["data"].items() if k != "workers"}}
        p["optim"] = {k: v for k, v in p["optim"].items() if k not in ("epochs", "decay_epochs")}
        p["runtime"] = {k: v for k, v in p["runtime"].items() if k != "threads"}
        video = {k: v for k, v in p["model"]["video"].items() if k not in departures}
        p["model"] = {**p["model"], "video": video, "mask_ratio": None}
        return p
    assert protocol(demo) == protocol(science)
    for c in (demo, science):
        assert c["pretrain"]["optim"]["decay_epochs"] == [c["pretrain"]["optim"]["epochs"] - 1]
    assert science["pretrain"]["optim"]["epochs"] <= demo["pretrain"]["optim"]["epochs"]
    assert science["grid"]["methods"]["tvts"] == {} and 0 in science["grid"]["seeds"]
    assert demo["pretrain"]["seed"] == 0


def test_stage_sections_have_one_source_of_truth():
    """The schema leaves every stage section to its dataclass: it lists no keys of its own there."""
    from tvts.workflow_config import STAGE_SECTIONS

    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    for name in STAGE_SECTIONS:
        assert set(schema[name]) <= {"type", "description"}, name
