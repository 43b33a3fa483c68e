"""Methods x seeds: experiment names and configs (tvts/grid.py), `tvts compare --by-method` and
the report's methods table, against a real MLflow store."""
from __future__ import annotations

import csv
import io as _io
import json
import statistics
import time

import numpy as np
import pytest
from PIL import Image

from tvts import grid, tracking
from tvts.compare import GridIntervals, RowKey
from tvts.config import ConfigError, load_yaml
from tvts.workflow_config import validate_workflow_config
from tvts.stages import compare as compare_stage
from tvts.stages import report as report_stage

from conftest import own_store

SCHEMA = "workflow/schemas/config.schema.yaml"
EXPERIMENT = "tvts-grid-test"
# method -> linear top-1 per seed (chosen so the means and stds are easy to check)
LINEAR = {"tvts": [20.0, 24.0, 22.0], "videomae": [10.0, 12.0, 14.0], "random": [15.0, 15.0, 16.0]}


def test_names_round_trip():
    assert grid.experiment_name("sort_only", 2) == "sort_only-s2"
    assert grid.parse_experiment("sort_only-s2") == ("sort_only", 2)
    assert grid.parse_experiment("demo") == ("demo", None)
    assert grid.parse_experiment("a-b-s10") == ("a-b", 10)
    assert grid.group_by_method(["tvts-s1", "demo", "tvts-s0", "videomae-s0"]) == {
        "tvts": ["tvts-s0", "tvts-s1"], "demo": ["demo"], "videomae": ["videomae-s0"]}
    assert grid.is_grid(["tvts-s0", "tvts-s1"]) and not grid.is_grid(["demo", "random"])


def test_aggregate_is_mean_and_sample_std():
    agg = grid.aggregate([20.0, 24.0, 22.0])
    assert (agg.mean, agg.n) == (22.0, 3) and agg.std == pytest.approx(statistics.stdev([20, 24, 22]))
    assert grid.aggregate([5.0]).std == 0.0 and grid.aggregate([None, float("nan")]) is None


def test_method_config_merges_overrides_and_seed():
    config = {"pretrain": {"seed": 0, "model": {"mask_ratio": 0.75, "k": 4}, "loss": {"sort_weight": 2.0}},
              "select": {"metric": "sort_exact"},
              "grid": {"seeds": [0, 1], "methods": {"videomae": {"pretrain": {"method": "videomae",
                                                                              "model": {"mask_ratio": 0.9}},
                                                                 "select": {"metric": "loss_recon"}},
                                                    "tvts": None}}}
    m = grid.method_config(config, "videomae", 1)
    assert m["pretrain"] == {"seed": 1, "method": "videomae", "model": {"mask_ratio": 0.9, "k": 4},
                             "loss": {"sort_weight": 2.0}}
    assert m["select"] == {"metric": "loss_recon"}
    assert config["pretrain"]["model"]["mask_ratio"] == 0.75  # the base is not modified
    assert grid.method_config(config, "tvts", 0)["pretrain"]["loss"] == {"sort_weight": 2.0}


@pytest.mark.parametrize("grid_section, key", [
    ({"seeds": [0, 0], "methods": {"tvts": {}}}, "grid.seeds"),
    ({"seeds": [0], "methods": {"tvts": {"pretrain": {"loss": {"sort_wieght": 0.0}}}}}, "sort_wieght"),
    ({"seeds": [0], "methods": {"tvts": {"pretrain": {"loss": {"sort_weight": 0.0, "align_weight": 0.0}}}}},
     "grid.methods.tvts"),
    ({"seeds": [0], "methods": {"tvts": {"eval": {}}}}, "eval"),
    ({"seeds": [0, 1], "methods": {"tvts": {}, "inits": {"no_pretrain": True, "seeds": [2]}}}, "seeds"),
    ({"seeds": [0], "methods": {"tvts": {}, "sup": {"supervised": {"dataset": "ssv2"}}}}, "no_pretrain"),
    ({"seeds": [0], "methods": {"tvts": {}, "sup": {"no_pretrain": True, "supervised": {"finetune": {}}}}},
     "dataset"),
    ({"seeds": [0], "methods": {"tvts": {}, "sup": {"no_pretrain": True,
                                                   "supervised": {"dataset": "ssv2", "stesp": 3}}}}, "stesp"),
])
def test_bad_grid_names_the_key(grid_section, key):
    config = load_yaml("config/science.yaml") | {"grid": grid_section}
    with pytest.raises(ConfigError, match=key):
        validate_workflow_config(config, SCHEMA)


def test_a_method_may_run_on_some_seeds_only():
    g = grid.GridConfig(seeds=(0, 1, 2), methods={"tvts": {}, "inits": {"no_pretrain": True, "seeds": [0]}})
    g.check("grid")
    assert g.method_seeds("tvts") == (0, 1, 2) and g.method_seeds("inits") == (0,)
    assert g.method_seeds("random") == (0, 1, 2)                 # the baseline: the grid's seeds


def test_a_one_seed_method_pairs_with_every_seed_of_tvts(tmp_path):
    """inits-s0 is the model of every seed: tvts − inits pairs each tvts seed with it."""
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(200)]
    tvts_hits = [(rng.random(200) < 0.6).astype(float) for _ in range(3)]
    inits_hits = (rng.random(200) < 0.3).astype(float)
    for exp, hits in [(f"tvts-s{s}", h) for s, h in enumerate(tvts_hits)] + [("inits-s0", inits_hits)]:
        path = tmp_path / exp / "eval" / "linear" / "ssv2.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"per_clip": {"ids": ids, "top1": list(hits)}}))
    members = {"tvts": [f"tvts-s{s}" for s in range(3)], "inits": ["inits-s0"]}
    diff = GridIntervals(tmp_path, members, replicates=200).difference("inits", RowKey("linear", "ssv2", "top1"))
    expected = 100 * (np.mean(tvts_hits) - inits_hits.mean())
    assert diff is not None and abs(diff.value - expected) < 1e-9 and diff.lo > 0


def test_science_config_is_valid():
    config = load_yaml("config/science.yaml")
    validate_workflow_config(config, SCHEMA)
    g = grid.grid_of(config)
    assert g.seeds == (0, 1, 2) and {"tvts", "videomae", "contrastive_only"} <= set(g.methods)
    video = grid.method_config(config, "videomae", 0)["pretrain"]
    assert video["method"] == "videomae" and video["model"]["mask_ratio"] == 0.9
    assert grid.method_config(config, "contrastive_only", 0)["pretrain"]["loss"]["sort_weight"] == 0
    # same data, steps and encoder for every method (the pixel probe replaces the encoder by pixels),
    # and every method read at its last checkpoint (the fixed-budget protocol)
    base = grid.method_config(config, "tvts", 0)["pretrain"]
    for method in g.methods:
        c = grid.method_config(config, method, 0)
        p = c["pretrain"]
        assert p["optim"]["epochs"] == base["optim"]["epochs"] and p["data"] == base["data"]
        assert p["model"]["video"] == base["model"]["video"] | ({"encoder": "pixels"} if method == "pixels" else {})
        assert c["select"] == {"metric": "step"}, method
    # the positive controls of the pre-registered gate: the supervised upper bound and the pixel probe
    assert g.supervised_of("supervised")["dataset"] == "ssv2"
    assert g.methods["supervised"]["no_pretrain"] and g.methods["pixels"]["no_pretrain"]
    assert g.method_seeds("supervised") == g.method_seeds("pixels") == (0,)


# ---- readers against a real store ----------------------------------------------------------

def _run(exp: str, stage: str, metrics: dict, tags: dict | None = None) -> None:
    with tracking.stage_run(stage, exp, {}, extra_tags=tags or {}) as run:
        run.log_metrics(metrics)
    time.sleep(0.003)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("gridstore")
    with pytest.MonkeyPatch.context() as mp:
        own_store(mp, root, EXPERIMENT)
        for method, values in LINEAR.items():
            for seed, top1 in enumerate(values):
                exp = f"{method}-s{seed}"
                _run(exp, "eval_linear", {"top1": top1, "top5": 50.0},
                     {"tvts.task": "linear", "tvts.dataset": "ssv2"})
                _run(exp, "eval_zeroshot_v2v", {"r1": 5.0 + seed, "r5": 20.0, "r10": 30.0},
                     {"tvts.task": "zeroshot_v2v", "tvts.dataset": "ssv2"})
                if method != "random":
                    _run(exp, "pretrain", {"val/sort_exact": 0.5 if method == "tvts" else 0.04})
        yield {"root": root}


def test_compare_by_method_with_globs(store, tmp_path, capsys):
    out_csv = tmp_path / "m.csv"
    assert compare_stage.main(["tvts-s*", "videomae-s*", "random-s*", "--by-method", "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[3:] == ["tvts", "(n=3)", "videomae", "(n=3)", "random", "(n=3)", "paper"]
    line = next(l for l in text.splitlines() if l.split()[:3] == ["linear", "ssv2", "top1"])
    sd = statistics.stdev(LINEAR["tvts"])
    assert f"22.00 ± {sd:.2f}" in line and "12.00 ± 2.00" in line and line.rstrip().endswith("31.50")
    rows = {(r["stage/task"], r["metric"]): r for r in csv.DictReader(out_csv.open())}
    top1 = rows[("linear", "top1")]
    assert float(top1["videomae_mean"]) == 12.0 and float(top1["videomae_std"]) == 2.0
    assert top1["random_n"] == "3" and float(top1["random_mean"]) == pytest.approx(46 / 3)


def test_compare_unmatched_glob_is_an_unknown_experiment(store, capsys):
    assert compare_stage.main(["tvts-s*", "nosuch-s*", "--by-method"]) == 2
    assert "'nosuch-s*': no runs" in capsys.readouterr().err


def test_report_methods_table_and_plot(store, tmp_path):
    out = tmp_path / "report"
    exps = [f"{m}-s{s}" for m in LINEAR for s in range(3)]
    assert report_stage.main(["--out", str(out), "--exps", *exps, "--json", str(tmp_path / "r.json")]) == 0
    summary = (out / "summary.md").read_text()
    assert "## Methods over seeds" in summary and "![Methods over seeds](methods.png)" in summary
    tvts_row = next(l for l in summary.splitlines() if l.startswith("| `tvts` |"))
    assert f"22.00 ± {statistics.stdev(LINEAR['tvts']):.2f}" in tvts_row and "| 3 |" in tvts_row
    assert "paper: VideoMAE (K400)" in summary and "17.90" in summary
    # 22 - 12 = +10 against a spread of 2: reported as a lead, computed, not typed
    assert "`tvts` − `videomae`: linear top-1 (ssv2) +10.00 (spread 2.00, TVTS ahead)" in summary
    assert "`tvts` − `random`: linear top-1 (ssv2) +6.67" in summary
    data = json.loads((tmp_path / "r.json").read_text())
    cell = data["methods"]["videomae"]["linear top-1 (ssv2)"]
    assert cell["values"] == [10.0, 12.0, 14.0] and cell["std"] == 2.0
    with Image.open(out / "methods.png") as im:
        assert im.format == "PNG" and im.size[0] > 600


def test_report_without_grid_has_a_placeholder(store, tmp_path):
    out = tmp_path / "report"
    assert report_stage.main(["--out", str(out), "--exps", "tvts-s0", "videomae-s0"]) == 0
    assert "## Methods over seeds" not in (out / "summary.md").read_text()
    with Image.open(out / "methods.png") as im:
        assert im.format == "PNG"


def test_report_pairs_methods_by_seed_from_per_clip_hits(store, tmp_path):
    """With the evaluations' per-clip hits under --results, each cell gets its 95 % interval over
    test clips and tvts − method its paired interval and verdict (docs/results.md, "Pre-registered")."""
    rng = np.random.default_rng(0)
    easy = rng.random(960) < 0.3
    for method, extra in (("tvts", 0.4), ("videomae", 0.0), ("random", 0.38)):
        for seed in range(3):
            hits = (easy | (rng.random(960) < extra)).astype(float)
            path = tmp_path / "results" / f"{method}-s{seed}" / "eval" / "linear" / "ssv2.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"per_clip": {"ids": [str(i) for i in range(960)], "top1": list(hits)}}))
    out = tmp_path / "report"
    exps = [f"{m}-s{s}" for m in LINEAR for s in range(3)]
    assert report_stage.main(["--out", str(out), "--exps", *exps, "--results", str(tmp_path / "results")]) == 0
    summary = (out / "summary.md").read_text()
    assert "### TVTS against each method, paired by seed" in summary
    videomae = next(l for l in summary.splitlines() if l.startswith("| `tvts` − `videomae` | linear top-1"))
    assert "**ahead (unchecked)**" in videomae                   # no controls in this grid: no instrument check
    assert "No instrument check" in summary
    tvts_row = next(l for l in summary.splitlines() if l.startswith("| `tvts` |"))
    assert "[" in tvts_row and "]" in tvts_row
    with Image.open(out / "temporal.png") as im:
        assert im.format == "PNG"


@pytest.mark.parametrize("upper", ["supervised", "video_order"])
def test_report_gates_verdicts_by_the_positive_controls(tmp_path, upper):
    """The pre-registered gate: where the upper bound is ahead of random and the pixel probe above
    chance, TVTS's verdict stands; where the upper bound is level with random, it is "not measurable".
    The controls themselves get no "tvts − control" row."""
    rng = np.random.default_rng(1)
    easy, hits = rng.random(960) < 0.3, {}
    #               top-1 extra share, within-pair extra share (over the same 960 clips)
    for method, top1, pair in (("tvts", 0.30, 0.30), ("random", 0.05, 0.05), (upper, 0.40, 0.05),
                               ("pixels", 0.50, 0.50)):
        for seed in range(2):
            hits[method, seed] = {m: (easy | (rng.random(960) < extra)).astype(float).tolist()
                                  for m, extra in (("top1", top1), ("within_pair_top1", pair))}
    root = tmp_path / "store"
    with pytest.MonkeyPatch.context() as mp:
        own_store(mp, root, "tvts-gate-test")
        for (method, seed), per_clip in hits.items():
            exp = f"{method}-s{seed}"
            _run(exp, "eval_linear", {"top1": 100 * np.mean(per_clip["top1"]), "n_classes": 12,
                                      "within_pair_top1": 100 * np.mean(per_clip["within_pair_top1"])},
                 {"tvts.task": "linear", "tvts.dataset": "ssv2"})
            path = tmp_path / "results" / exp / "eval" / "linear" / "ssv2.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"per_clip": {"ids": [str(i) for i in range(960)]} | per_clip}))
        out = tmp_path / "report"
        exps = [f"{m}-s{s}" for m, s in hits]
        assert report_stage.main(["--out", str(out), "--exps", *exps, "--results", str(tmp_path / "results")]) == 0
    lines = (out / "summary.md").read_text().splitlines()
    check = {l.split("|")[1].strip(): l for l in lines if l.startswith("| linear ") and l.endswith(("yes** |", "no** |"))}
    assert "**yes**" in check["linear top-1 (ssv2)"] and "**no**" in check["linear within-pair (ssv2)"]
    verdicts = {l.split("|")[2].strip(): l.split("|")[5].strip() for l in lines if l.startswith("| `tvts` − `random`")}
    assert verdicts == {"linear top-1 (ssv2)": "**ahead**", "linear within-pair (ssv2)": "**not measurable**"}
    assert any(l.startswith(f"| Metric | `{upper}` − `random`") for l in lines)
    assert not any(l.startswith((f"| `tvts` − `{upper}`", "| `tvts` − `pixels`")) for l in lines)
