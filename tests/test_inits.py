"""The init stages, the paper's starting point in miniature: an image MAE (loaded by `init: mae:`)
and a masked-LM text encoder (loaded by `model.text.model: <folder>`), on the smoke shards."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tvts import grid
from tvts.config import ConfigError, from_dict, load_yaml
from tvts.models.text import SCRATCH, TextEncoder, build_spec, load_tokenizer, tokenize
from tvts.stages import init_image_mae, init_text_mlm
from tvts.train.config import PretrainConfig
from tvts.train.init_config import ImageMAEConfig, TextMLMConfig
from tvts.train.pretrain import initial_model
from tvts.train.text_mlm import mask_tokens, train_texts
from tvts.workflow_config import check_inits

ROOT = Path(__file__).resolve().parents[1]
SMOKE = load_yaml(ROOT / "config/smoke.yaml")
TINY = {"steps": 4, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "ckpt_every": 2}


def sections(**inits) -> str:
    return json.dumps({"pretrain": SMOKE["pretrain"]} | inits)


def run_image_mae(shards: Path, out: Path, **cfg) -> Path:
    section = TINY | {"frames": 24} | cfg
    assert init_image_mae.main(["--shards", str(shards), "--out", str(out), "--cpu", "--exp", "t",
                                "--config-json", sections(init_image_mae=section)]) == 0
    return out


def run_text_mlm(shards: Path, out: Path, **cfg) -> Path:
    assert init_text_mlm.main(["--shards", str(shards), "--out", str(out), "--cpu", "--exp", "t",
                               "--config-json", sections(init_text_mlm=TINY | cfg)]) == 0
    return out


def smoke_pretrain(**changes) -> PretrainConfig:
    cfg = from_dict(PretrainConfig, SMOKE["pretrain"], "pretrain")
    return replace(cfg, **changes)


def test_image_mae_output_loads_through_init_mae(smoke_shards, tmp_path):
    """The checkpoint is in ImageMAE's format: `init: mae:<it>` loads it with the strict loader,
    the 2-D patch kernel repeated over the tubelet, every encoder weight the trained one."""
    out = run_image_mae(smoke_shards, tmp_path / "init_image_mae" / "model.pt")
    saved = torch.load(out, weights_only=True)["model"]
    assert saved["patch_embed.proj.weight"].dim() == 4 and "temporal_embed" not in saved
    assert any(k.startswith("decoder.") for k in saved)
    cfg = smoke_pretrain(init=f"mae:{out}")
    from tvts.train.pretrain import build_data
    from tvts.train import distributed as dist
    _, _, spec = build_data(smoke_shards, cfg, dist.init_distributed(use_cuda=False))
    video = initial_model(cfg, spec).video
    w = video.patch_embed.proj.weight
    for t in range(cfg.model.video.tubelet):
        assert torch.equal(w[:, :, t], saved["patch_embed.proj.weight"])
    assert torch.equal(video.blocks[0].attn.qkv.weight, saved["blocks.0.attn.qkv.weight"])
    assert torch.equal(video.pos_embed, saved["pos_embed"])
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["stage"] == "init_image_mae" and manifest["counts"]["frames"] == 24
    assert np.isfinite(manifest["outputs"]["losses"]["final"])


def test_image_mae_is_deterministic_and_its_loss_falls(smoke_shards, tmp_path):
    cfg = {"steps": 40, "lr": 3e-3, "log_every": 5, "ckpt_every": 100, "batch_size": 8, "norm_pix_eps": 0.01}
    a = run_image_mae(smoke_shards, tmp_path / "a" / "model.pt", **cfg)
    b = run_image_mae(smoke_shards, tmp_path / "b" / "model.pt", **cfg)
    sa, sb = (torch.load(p, weights_only=True)["model"] for p in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    losses = json.loads((a.parent / "manifest.json").read_text())["outputs"]["losses"]
    assert losses["final"] < 0.95 * losses["first"]


def test_text_mlm_folder_loads_as_the_pretrained_text_model(smoke_shards, tmp_path):
    """`model.text.model: <folder>` reads the folder through the Hugging Face path: the scratch
    tokenizer's ids, and the encoder weights the MLM trained."""
    out = run_text_mlm(smoke_shards, tmp_path / "init_text_mlm")
    assert {"config.json", "tokenizer.json", "manifest.json"} <= {p.name for p in out.iterdir()}
    cfg = smoke_pretrain()
    text = replace(cfg.model.text, model=str(out))
    spec = build_spec(text)
    scratch = build_spec(replace(text, model=SCRATCH), train_texts(smoke_shards))
    sample = ["the red square moves left", "a blue circle grows"]
    ids = [tokenize(load_tokenizer(s, text.max_length), sample)[0] for s in (spec, scratch)]
    assert torch.equal(ids[0], ids[1])
    encoder = TextEncoder(spec, pretrained=str(out))
    from transformers import DistilBertForMaskedLM
    mlm = DistilBertForMaskedLM.from_pretrained(out)
    assert torch.equal(encoder.model.embeddings.word_embeddings.weight, mlm.distilbert.embeddings.word_embeddings.weight)
    model = initial_model(replace(cfg, model=replace(cfg.model, text=text)), spec)
    assert torch.equal(model.text.model.transformer.layer[0].ffn.lin1.weight,
                       mlm.distilbert.transformer.layer[0].ffn.lin1.weight)


def test_text_mlm_loss_falls_well_below_its_start(smoke_shards, tmp_path):
    out = run_text_mlm(smoke_shards, tmp_path / "mlm", steps=60, lr=1e-2, batch_size=16, log_every=10,
                       ckpt_every=100, warmup_steps=4)
    losses = json.loads((out / "manifest.json").read_text())["outputs"]["losses"]
    assert losses["final"] < 0.7 * losses["first"]   # measured: 4.45 -> 2.40


def test_text_mlm_can_keep_its_word_embeddings_at_their_draw(smoke_shards, tmp_path):
    """freeze_word_embeddings: the layers learn, the word embeddings stay where the seed drew them."""
    from transformers import DistilBertForMaskedLM

    def weights(name: str, **cfg):
        mlm = DistilBertForMaskedLM.from_pretrained(run_text_mlm(smoke_shards, tmp_path / name, lr=1e-2, **cfg))
        return mlm.distilbert.embeddings.word_embeddings.weight, mlm.distilbert.transformer.layer[0].ffn.lin1.weight

    frozen, frozen_longer, trained = (weights("f4", freeze_word_embeddings=True),
                                      weights("f8", freeze_word_embeddings=True, steps=8), weights("t4"))
    assert torch.equal(frozen[0], frozen_longer[0]) and not torch.equal(frozen[1], frozen_longer[1])
    assert not torch.equal(frozen[0], trained[0])   # same seed, same draw: training moved them


def test_mask_tokens_is_bert_masking():
    """15 % of the real tokens are predicted; of those 80 % become [MASK], 10 % a random token,
    10 % stay; padding and [CLS]/[SEP] are never picked."""
    rng = np.random.default_rng(0)
    ids = torch.randint(5, 200, (400, 50))
    attention = torch.ones_like(ids)
    attention[:, 40:] = 0
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    inputs, labels = mask_tokens(ids, attention, special, mask_id=4, vocab=200, prob=0.15, rng=rng)
    picked = labels != -100
    assert not picked[:, 40:].any() and not picked[:, 0].any()
    assert abs(picked.float().sum() / (400 * 39) - 0.15) < 0.01
    assert torch.equal(labels[picked], ids[picked])
    masked = (inputs == 4) & picked
    same = (inputs == ids) & picked
    n = picked.sum()
    # "same" also holds the random replacements that drew the token itself (1 in 195)
    assert abs(masked.sum() / n - 0.8) < 0.03 and abs(same.sum() / n - 0.1) < 0.03
    assert torch.equal(inputs[~picked], ids[~picked])


@pytest.mark.parametrize("cls, section, key", [
    (ImageMAEConfig, {"mask_ratio": 1.0}, "init_image_mae.mask_ratio"),
    (ImageMAEConfig, {"decoder_dim": 30, "decoder_heads": 4}, "init_image_mae.decoder_dim"),
    (TextMLMConfig, {"mask_prob": 0.0}, "init_text_mlm.mask_prob"),
    (TextMLMConfig, {"warmup_steps": 10, "steps": 10}, "init_text_mlm.warmup_steps"),
    (TextMLMConfig, {"stpes": 10}, "init_text_mlm.stpes"),
])
def test_bad_init_section_names_the_key(cls, section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(cls, section, key.split(".")[0])


# ---- the workflow: dag.inits and the no_pretrain grid method -------------------------------------

def test_grid_no_pretrain_methods_and_inits_paths():
    config = {"grid": {"seeds": [0, 1], "methods": {"tvts": {}, "inits": {"no_pretrain": True}}}}
    g = grid.grid_of(config)
    assert g.pretrained_methods == ("tvts",) and g.untrained_methods == ("inits",)
    pretrain = grid.with_inits({"init": "random", "model": {"text": {"model": "scratch", "dim": 8}}}, "science")
    assert pretrain == {"init": "mae:results/science/init_image_mae/model.pt",
                        "model": {"text": {"model": "results/science/init_text_mlm", "dim": 8}}}
    with pytest.raises(ConfigError, match=r"grid\.methods: must pretrain at least one method"):
        grid.grid_of({"grid": {"methods": {"inits": {"no_pretrain": True}}}})
    with pytest.raises(ConfigError, match=r"grid\.methods\.inits\.no_pretrain"):
        grid.grid_of({"grid": {"methods": {"tvts": {}, "inits": {"no_pretrain": "yes"}}}})


def test_dag_inits_leaves_init_and_text_model_to_the_workflow():
    config = {"dag": {"inits": True}, "pretrain": {"init": "mae:x.pt"}}
    with pytest.raises(ConfigError, match=r"pretrain\.init: must be random with dag\.inits"):
        check_inits(config)
    with pytest.raises(ConfigError, match=r"pretrain\.model\.text\.model: must be scratch"):
        check_inits({"dag": {"inits": True}, "pretrain": {"model": {"text": {"model": "distilbert-base-uncased"}}}})
    check_inits({"dag": {"inits": False}, "pretrain": {"init": "mae:x.pt"}})


def test_dag_plans_the_inits_once_for_every_method_but_the_random_baseline(smoke_workdir, tmp_path):
    """Every pretraining and the `inits` method read both init outputs; `random` reads neither."""
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["dag"]["inits"] = True
    config["grid"] = {"seeds": [0], "methods": {"tvts": {}, "inits": {"no_pretrain": True}}}
    config["eval"]["tasks"] = {"linear": ["ssv2"]}
    cfg = tmp_path / "inits.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory",
           str(smoke_workdir), "--configfile", str(cfg), "-n", "-p", "--cores", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    jobs = {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M)}
    assert jobs["init_image_mae"] == 1 and jobs["init_text_mlm"] == 1 and jobs["init_model"] == 2
    commands = {m[1]: m[0] for m in re.findall(r"(exec .*--exp (\S+) --rule (?:pretrain|init_model) .*)$", out, re.M)}
    image, text = "mae:results/smoke/init_image_mae/model.pt", '"model": "results/smoke/init_text_mlm"'
    assert image in commands["tvts-s0"] and text in commands["tvts-s0"]
    assert image in commands["inits-s0"] and text in commands["inits-s0"]
    assert '"init": "random"' in commands["random-s0"] and "init_text_mlm" not in commands["random-s0"]


def test_pretraining_and_selection_run_from_both_inits(smoke_shards, tmp_path):
    """A whole (two-step) pretraining from the two init outputs, then selection and loading for
    evaluation: the checkpoint carries the MLM folder's tokenizer and needs no folder to load."""
    from tvts.models.load import load_model
    from tvts.stages import pretrain, select_ckpt

    image = run_image_mae(smoke_shards, tmp_path / "init_image_mae" / "model.pt")
    text = run_text_mlm(smoke_shards, tmp_path / "init_text_mlm")
    section = json.loads(json.dumps(SMOKE["pretrain"]))
    section["init"], section["model"]["text"]["model"] = f"mae:{image}", str(text)
    assert pretrain.main(["--shards", str(smoke_shards), "--out", str(tmp_path / "pretrain"), "--cpu", "--exp", "t",
                          "--config-json", json.dumps({"pretrain": section})]) == 0
    assert select_ckpt.main(["--pretrain", str(tmp_path / "pretrain"), "--shards", str(smoke_shards), "--exp", "t",
                             "--out", str(tmp_path / "select"), "--config-json", json.dumps({"select": SMOKE["select"]})]) == 0
    shutil.rmtree(text)   # evaluation rebuilds the text side from the checkpoint alone
    model, cfg = load_model(tmp_path / "select" / "best.pt")
    assert cfg.init == f"mae:{image}" and cfg.model.text.model == str(text)
    assert model.text.model.config.dim == SMOKE["pretrain"]["model"]["text"]["dim"]


def test_a_killed_image_mae_resumes_to_the_same_weights(smoke_shards, tmp_path, monkeypatch, caplog):
    """Killed after its step-2 checkpoint, a rerun resumes there and ends bit-identical to a run
    that was never interrupted (batches are a pure function of (seed, step))."""
    from tvts.train import image_mae

    whole = run_image_mae(smoke_shards, tmp_path / "whole" / "model.pt")
    real = image_mae.frame_batch

    def dies_at_step_3(pool, step, cfg, video):
        if step == 3:
            raise KeyboardInterrupt("killed")
        return real(pool, step, cfg, video)

    monkeypatch.setattr(image_mae, "frame_batch", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_image_mae(smoke_shards, tmp_path / "killed" / "model.pt")
    assert [p.name for p in (tmp_path / "killed" / "ckpt").glob("*.pt")] == ["step-00000002.pt"]
    monkeypatch.setattr(image_mae, "frame_batch", real)
    caplog.set_level("INFO", logger="tvts.init")
    resumed = run_image_mae(smoke_shards, tmp_path / "killed" / "model.pt")
    assert "resuming from step-00000002.pt (step 2)" in caplog.text
    a, b = (torch.load(p, weights_only=True)["model"] for p in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frames_that_do_not_decode_are_skipped_and_counted():
    import io as bytes_io
    from types import SimpleNamespace

    from PIL import Image

    from tvts import io
    from tvts.train.image_mae import frame_pool

    def jpeg(size):
        buf = bytes_io.BytesIO()
        Image.new("RGB", size, (200, 10, 10)).save(buf, format="JPEG")
        return buf.getvalue()

    data = {"good": jpeg((40, 36)), "junk": b"not a jpeg", "small": jpeg((20, 20))}
    refs = [SimpleNamespace(shard="s.tar", key=k, members={"000.jpg": (0, 0)}) for k in data]
    refs.append(SimpleNamespace(shard="s.tar", key="nojpg", members={"json": (0, 0)}))
    rejects = io.Rejects("init_image_mae")
    pool = frame_pool(refs, lambda ref, name: data[ref.key], ImageMAEConfig(frames=8), 32, rejects)
    assert len(pool) == 2 and pool[0].shape == (36, 40, 3) and pool[0].dtype == np.uint8
    assert rejects.counts() == {"bad_jpeg": 2, "no_frames": 2, "too_small": 2}


def test_the_demo_and_the_science_grid_share_the_init_recipes():
    """The grid starts from the miniature inits, as the paper from its pretrained weights; the demo from
    random weights (at its patch 8 and temporal scale 1 the sort stalls from the inits, docs/results.md).
    `dag.inits: true` builds the same inits in either, and the paper's config loads the real weights."""
    demo, science = (load_yaml(ROOT / f"config/{n}.yaml") for n in ("demo", "science"))
    for section in ("init_image_mae", "init_text_mlm"):
        assert demo[section] == science[section], section
    assert science["dag"]["inits"] and not demo["dag"]["inits"]
    assert science["grid"]["methods"]["inits"] == {"no_pretrain": True, "seeds": [0]}   # H3: the inits alone
    assert not load_yaml(ROOT / "config/paper.yaml")["dag"].get("inits", False)   # the real weights
