"""config/released.yaml: a checkpoint in the official TVTS release layout, evaluated on every
evaluation of the paper with no data stage and no pretraining (`dag.pretrain: false`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tvts.models.load import build_model, load_model
from tvts.models.text import build_spec, train_wordpiece
from tvts.stages import eval_zeroshot_v2v, init_model

from conftest import ROOT, SMOKE
from test_init import release_state
from test_workflow import planned_jobs, snakemake

RELEASED, PAPER = (yaml.safe_load((ROOT / f"config/{n}.yaml").read_text()) for n in ("released", "paper"))
TINY = {"img_size": 32, "patch_size": 8, "tubelet": 2, "num_frames": 8, "dim": 32, "depth": 1, "heads": 2}


def test_released_config_is_the_papers_model_and_evaluations_without_pretraining():
    assert RELEASED["dag"]["pretrain"] is False and RELEASED["pretrain"]["init"].startswith("tvts:")
    assert RELEASED["pretrain"]["model"] == PAPER["pretrain"]["model"]
    assert RELEASED["eval"] == PAPER["eval"]


def test_released_config_dry_runs_every_paper_evaluation_and_nothing_else(tmp_path):
    jobs = planned_jobs(snakemake(tmp_path, "-n", configfile=ROOT / "config/released.yaml"))
    tasks = RELEASED["eval"]["tasks"]
    assert jobs == {"init_model": 1, "report": 1, "all": 1} | {f"eval_{t}": len(d) for t, d in tasks.items()}


def pretrained_text_folder(path: Path) -> Path:
    """A local 'pretrained' DistilBERT folder: config and tokenizer files, no weights (the release
    holds them), as a hub download of distilbert-base-uncased gives, tiny."""
    from transformers import DistilBertConfig, PreTrainedTokenizerFast

    tok = train_wordpiece(["the red square moves left", "a blue circle turns", "green bars grow"], 200)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(path)
    DistilBertConfig(vocab_size=tok.get_vocab_size(), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                     max_position_embeddings=64).save_pretrained(path)
    return path


def released_config(tmp_path: Path, release: Path, text: Path) -> dict:
    """config/released.yaml at tiny sizes, reading `release` and the smoke corpus's SSV2."""
    cfg = json.loads(json.dumps(RELEASED))
    cfg["pretrain"] |= {"init": f"tvts:{release}"}
    cfg["pretrain"]["model"] |= {"video": TINY, "text": {"model": str(text), "max_length": 16},
                                 "sort": {"depth": 1, "heads": 2}, "embed_dim": 16}
    cfg["eval"] = yaml.safe_load(SMOKE.read_text())["eval"]
    return cfg


def test_a_release_layout_checkpoint_becomes_the_evaluated_model(tmp_path, smoke_corpus):
    from tvts.config import from_dict
    from tvts.train.config import PretrainConfig

    text = pretrained_text_folder(tmp_path / "distilbert")
    cfg = released_config(tmp_path, tmp_path / "tvts_release.pth", text)
    source = build_model(from_dict(PretrainConfig, cfg["pretrain"], "pretrain"),
                         build_spec(from_dict(PretrainConfig, cfg["pretrain"], "pretrain").model.text))
    torch.manual_seed(7)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    torch.save({"state_dict": release_state(source), "epoch": 20}, tmp_path / "tvts_release.pth")

    model_pt = tmp_path / "results/released/init/model.pt"
    assert init_model.main(["--out", str(model_pt), "--exp", "released",
                            "--config-json", json.dumps({"pretrain": cfg["pretrain"]})]) == 0
    model, _ = load_model(model_pt)
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    cfg["eval"]["datasets"]["ssv2"]["root"] = str(smoke_corpus / "ssv2")
    out = tmp_path / "results/released/eval/zeroshot_v2v/ssv2.json"
    assert eval_zeroshot_v2v.main(["--model", str(model_pt), "--dataset", "ssv2", "--out", str(out), "--device", "cpu",
                                   "--exp", "released", "--config-json", json.dumps({"eval": cfg["eval"]})]) == 0
    assert json.loads(out.read_text())["metrics"]


def test_without_shards_a_scratch_tokenizer_is_one_line_naming_the_key(tmp_path):
    cfg = yaml.safe_load(SMOKE.read_text())["pretrain"]
    with pytest.raises(SystemExit, match=r"^init_model: pretrain.model.text.model: scratch"):
        init_model.main(["--out", str(tmp_path / "m.pt"), "--config-json", json.dumps({"pretrain": cfg})])
