"""`tvts compare` and `tvts report` against a real SQLite MLflow store written by `tracking.stage_run`.

The store holds two experiments with reruns: a FAILED and a still-RUNNING rerun newer than the
finished one (both ignored) and a newer FINISHED rerun (it wins).
"""
from __future__ import annotations

import csv
import io as _io
import json
import time

import pytest
from PIL import Image

from tvts import tracking
from tvts.stages import compare as compare_stage
from tvts.stages import report as report_stage

from conftest import own_store

EXPERIMENT = "tvts-compare-test"
PLOTS = ("pretrain_curves.png", "retrieval.png", "classification.png")


def eval_run(exp: str, task: str, dataset: str, metrics: dict, paper: bool = False) -> str:
    tags = {"tvts.task": task, "tvts.dataset": dataset} | ({"tvts.paper_config": "true"} if paper else {})
    with tracking.stage_run(f"eval_{task}", exp, {"eval": {"task": task}}, extra_tags=tags) as run:
        run.log_metrics(metrics)
    time.sleep(0.005)  # distinct start times, so "latest" is well defined
    return run.run_id


def pretrain_run(exp: str, stage: str = "pretrain", scale: float = 1.0) -> str:
    with tracking.stage_run(stage, exp, {"pretrain": {"steps": 4}}) as run:
        for step in range(1, 5):
            run.log_metrics({"train/loss_sort": 2.0 / step, "train/loss": 3.0 / step}, step=step)
            if step % 2 == 0:
                run.log_metrics({"val/sort_exact": 0.1 * step * scale, "val/sort_acc": 0.2 * step * scale}, step=step)
    time.sleep(0.005)
    return run.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """demo: pretrain, text-only, select, v2v, linear (with reruns), t2v; random: v2v + linear only."""
    root = tmp_path_factory.mktemp("cmpstore")
    with pytest.MonkeyPatch.context() as mp:
        own_store(mp, root, EXPERIMENT)
        ids = {"demo/pretrain": pretrain_run("demo"),
               "demo/text_only": pretrain_run("demo", "text_only_baseline", 0.5)}
        with tracking.stage_run("select_ckpt", "demo", {}) as run:
            run.log_metrics({"best/sort_exact": 0.4, "best/sort_acc": 0.8})
        eval_run("demo", "zeroshot_v2v", "ssv2", {"r1": 3.25, "r5": 12.5, "r10": 20.0})
        eval_run("demo", "linear", "ssv2", {"top1": 10.0, "top5": 30.0})
        ids["demo/linear"] = eval_run("demo", "linear", "ssv2", {"top1": 20.5, "top5": 41.0, "n_train": 1234})
        with pytest.raises(RuntimeError):
            with tracking.stage_run("eval_linear", "demo", {}, extra_tags={"tvts.task": "linear",
                                                                           "tvts.dataset": "ssv2"}) as run:
                run.log_metrics({"top1": 99.0})
                raise RuntimeError("crashed rerun")
        time.sleep(0.005)
        running = tracking.stage_run("eval_linear", "demo", {}, extra_tags={"tvts.task": "linear",
                                                                             "tvts.dataset": "ssv2"})
        running.__enter__().log_metrics({"top1": 77.0})  # never closed: stays RUNNING
        eval_run("demo", "t2v", "msrvtt", {"zeroshot/r1": 1.5, "finetuned/r1": 4.0, "finetuned/medr": 40.0})
        eval_run("random", "zeroshot_v2v", "ssv2", {"r1": 1.0, "r5": 5.0, "r10": 9.5})
        eval_run("random", "linear", "ssv2", {"top1": 5.5})
        with pytest.raises(RuntimeError):  # an experiment with failed runs only
            with tracking.stage_run("pretrain", "broken", {}):
                raise RuntimeError("boom")
        eval_run("paperish", "linear", "ssv2", {"top1": 30.0}, paper=True)
        yield {"root": root, "ids": ids, "uri": f"sqlite:///{root}/mlflow.db"}
        running.__exit__(None, None, None)  # close it in this store, not at garbage collection


def table_row(text: str, *labels: str) -> list[str]:
    """The cells of the text-table line whose first columns are `labels`."""
    for line in text.splitlines():
        cells = line.split()
        if cells[:len(labels)] == list(labels):
            return cells[len(labels):]
    raise AssertionError(f"no row {labels} in:\n{text}")


def test_latest_runs_ignore_failed_and_running(store):
    runs = tracking.latest_runs(["demo"])
    linear = [r for r in runs if r.task == "linear"]
    assert len(linear) == 1 and linear[0].run_id == store["ids"]["demo/linear"]
    assert linear[0].metrics["top1"] == 20.5 and linear[0].status == "FINISHED"
    assert {r.stage for r in runs} == {"pretrain", "text_only_baseline", "select_ckpt", "eval_zeroshot_v2v",
                                       "eval_linear", "eval_t2v"}
    assert tracking.latest_runs(["broken"]) == []
    assert tracking.list_exps() == ["broken", "demo", "paperish", "random"]
    assert tracking.metric_history(store["ids"]["demo/pretrain"], "val/sort_exact") == [
        (2, pytest.approx(0.2)), (4, pytest.approx(0.4))]


def test_reader_on_absent_store_or_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path}/none.db"
    assert tracking.latest_runs(["demo"], uri=uri) == [] and not (tmp_path / "none.db").exists()
    assert tracking.search_stage_runs(None, experiment="no-such-experiment") == []


def test_compare_columns_and_csv(store, tmp_path, capsys):
    out_csv = tmp_path / "cmp.csv"
    assert compare_stage.main(["demo", "random", "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["stage/task", "dataset", "metric", "demo", "random", "paper"]
    assert table_row(text, "linear", "ssv2", "top1") == ["20.50", "5.50", "31.50"]
    assert table_row(text, "linear", "ssv2", "top5") == ["41.00", "–"]  # the paper reports no top-5
    assert table_row(text, "zeroshot_v2v", "ssv2", "r1") == ["3.25", "1.00", "14.70"]
    assert table_row(text, "t2v", "msrvtt", "finetuned/medr") == ["40", "–", "3"]
    assert table_row(text, "select_ckpt", "best/sort_exact") == ["0.4", "–"]
    assert table_row(text, "linear", "ssv2", "n_train") == ["1234", "–"]  # non-headline metrics are kept
    sections = [line.split()[0] for line in text.splitlines()[2:]]
    order = ["pretrain", "text_only_baseline", "select_ckpt", "zeroshot_v2v", "linear", "t2v"]
    assert [s for s in dict.fromkeys(sections)] == order
    rows = list(csv.DictReader(out_csv.open()))
    top1 = next(r for r in rows if (r["stage/task"], r["dataset"], r["metric"]) == ("linear", "ssv2", "top1"))
    assert (float(top1["demo"]), float(top1["random"]), float(top1["paper"])) == (20.5, 5.5, 31.5)
    v2v = next(r for r in rows if r["stage/task"] == "zeroshot_v2v" and r["metric"] == "r10")
    assert (float(v2v["demo"]), float(v2v["random"])) == (20.0, 9.5)
    loss = next(r for r in rows if r["stage/task"] == "pretrain" and r["metric"] == "train/loss_sort")
    assert float(loss["demo"]) == 0.5 and loss["random"] == ""  # the latest step's value, full precision


def test_compare_csv_to_stdout_and_headline(store, capsys):
    assert compare_stage.main(["demo", "--csv", "-", "--headline"]) == 0
    rows = list(csv.DictReader(_io.StringIO(capsys.readouterr().out)))
    assert {r["metric"] for r in rows if r["stage/task"] == "linear"} == {"top1", "top5"}


def test_compare_unknown_experiment(store, capsys):
    assert compare_stage.main(["demo", "nosuch", "broken"]) == 2
    out, err = capsys.readouterr()
    assert "'nosuch': no runs" in err and "'broken': no FINISHED runs" in err and "FAILED" in err
    assert out.splitlines()[0].split() == ["stage/task", "dataset", "metric", "demo", "paper"]
    assert compare_stage.main(["nosuch"]) == 2


def read_report(out) -> tuple[str, dict]:
    for name in PLOTS:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 100
    return (out / "summary.md").read_text(), json.loads((out / "report.json").read_text())


def md_row(summary: str, *labels: str) -> list[str]:
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:len(labels)] == list(labels):
            return cells[len(labels):]
    raise AssertionError(f"no row {labels} in:\n{summary}")


def test_report_side_by_side_without_paper_column(store, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["--out", str(out), "--exps", "demo", "random", "--json", str(out / "report.json")]
    assert report_stage.main(argv) == 0
    summary, data = read_report(out)
    # evaluations first, each beside its chance level; no paper column
    assert md_row(summary, "Evaluation", "Dataset", "Metric") == ["chance", "`demo`", "`random`"]
    assert md_row(summary, "Linear probe", "ssv2", "top-1")[1:] == ["20.50", "5.50"]
    assert md_row(summary, "Zero-shot V2V retrieval", "ssv2", "R@10")[1:] == ["20.00", "9.50"]
    assert summary.index("## Evaluations") < summary.index("## Training and selection internals")
    assert md_row(summary, "Stage", "Dataset", "Metric") == ["`demo`", "`random`"]
    assert "n_train" not in summary and "## Paper reference" in summary
    assert md_row(summary, "SSV2 linear probe", "ssv2", "top-1")[0] == "31.50"  # the reference table
    assert md_row(summary, "`demo`") == ["0.8", "0.4", "0.4", "0.2", "+0.2"]  # TVTS vs text-only sorting
    assert store["ids"]["demo/linear"] in summary
    assert "`random`: pretrain" in summary and "`random`: t2v/msrvtt" in summary
    assert "Not in `pretrain_curves.png`" in summary and all(f"]({p})" in summary for p in PLOTS)
    assert data["show_paper"] is False and data["skipped_curves"] == ["random"]
    top1 = next(r for r in data["headline"] if (r["section"], r["metric"]) == ("linear", "top1"))
    assert top1["values"] == {"demo": 20.5, "random": 5.5} and top1["paper"] is None


def test_report_paper_column_only_with_paper_config(store, tmp_path):
    out = tmp_path / "report"
    argv = ["--out", str(out), "--exps", "demo", "paperish", "--json", str(out / "report.json")]
    assert report_stage.main(argv) == 0
    summary, data = read_report(out)
    assert md_row(summary, "Evaluation", "Dataset", "Metric") == ["chance", "`demo`", "`paperish`", "paper"]
    assert md_row(summary, "Linear probe", "ssv2", "top-1")[1:] == ["20.50", "30.00", "31.50"]
    assert md_row(summary, "Fine-tune", "k400", "top-1")[1:] == ["–", "–", "78.80"]  # the paper's rows all appear
    assert "## Paper reference" not in summary and data["show_paper"] is True


def test_report_all_experiments_by_default(store, tmp_path):
    out = tmp_path / "report"
    assert report_stage.main(["--out", str(out), "--json", str(out / "report.json")]) == 0
    summary, data = read_report(out)
    assert data["exps"] == ["broken", "demo", "paperish", "random"]
    assert "`broken`: pretrain (only FAILED runs)" in summary


def test_report_on_empty_store_writes_placeholders(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")
    out = tmp_path / "report"
    assert report_stage.main(["--out", str(out), "--exps", "demo", "--json", str(out / "report.json")]) == 0
    summary, data = read_report(out)
    assert "warning" in capsys.readouterr().err
    assert "No finished runs" in summary and data["empty"] is True
    assert "`demo`: no runs at all" in summary


def perf_metrics(speed: float, wait: float) -> dict:
    return {"perf/samples_per_s_per_device": speed, "perf/data_wait_share": wait, "perf/step_time_p50_s": 8 / speed,
            "perf/step_time_p99_s": 10 / speed, "perf/mfu": 0.01 * speed, "perf/peak_mem_gb": 2.5,
            "perf/device_hours": 0.5}


def test_throughput_side_by_side(tmp_path, monkeypatch, capsys):
    """Run B 1.8x faster and 40 % in the loader: one row in `tvts compare`, one look in the report."""
    own_store(monkeypatch, tmp_path, "tvts-perf-test")
    for exp, speed, wait in (("a", 10.0, 0.1), ("b", 18.0, 0.4)):
        with tracking.stage_run("pretrain", exp, {}) as run:
            run.log_metrics({"val/sort_exact": 0.3} | perf_metrics(speed, wait), step=4)
        time.sleep(0.005)
    assert compare_stage.main(["a", "b"]) == 0
    text = capsys.readouterr().out
    assert table_row(text, "pretrain", "perf/samples_per_s_per_device") == ["10", "18"]
    assert table_row(text, "pretrain", "perf/data_wait_share") == ["0.1", "0.4"]
    out = tmp_path / "report"
    assert report_stage.main(["--out", str(out), "--exps", "a", "b"]) == 0
    summary = (out / "summary.md").read_text()
    assert "## Throughput: where the training time went" in summary
    assert md_row(summary, "Pretraining (TVTS)", "", "`b`")[:3] == ["18", "1.80×", "40.0 %"]
    assert md_row(summary, "Pretraining (TVTS)", "", "`a`")[:3] == ["10", "1.00×", "10.0 %"]
    assert "perf/mfu" not in summary.split("## Throughput")[0]         # not in the headline table


def test_a_no_pretraining_baseline_misses_no_training_stages(tmp_path, monkeypatch):
    own_store(monkeypatch, tmp_path, "tvts-missing-test")
    pretrain_run("a")
    with tracking.stage_run("init_model", "base", {}):
        pass
    eval_run("a", "linear", "ssv2", {"top1": 1.0})
    eval_run("base", "linear", "ssv2", {"top1": 1.0})
    from tvts.report.content import collect, missing_runs

    assert missing_runs(collect(["a", "base"])) == ["`a`: select_ckpt"]


def health_metrics(rank: float, share: float, fit: float, test: float) -> dict:
    return {"cls/top1": test, "cls/arrow_top1": 50.0, "n_classes": 12, "health/cls/effective_rank": rank,
            "health/cls/centred_share": share, "health/cls/train_top1": fit, "health/cls/arrow_train_top1": 52.0}


def test_feature_health_in_report_and_compare(tmp_path, monkeypatch, capsys):
    """A spread encoder over two seeds and a collapsed one: the report gives each readout's rank and share
    and the probe's train accuracy beside its test accuracy, in a section of its own; `tvts compare
    --by-method` aggregates the same metrics over seeds."""
    own_store(monkeypatch, tmp_path, "tvts-health-test")
    for exp, metrics in (("spread-s0", health_metrics(10.0, 0.6, 40.0, 20.0)),
                         ("spread-s1", health_metrics(12.0, 0.8, 50.0, 22.0)),
                         ("floor-s0", health_metrics(1.0, 0.00004, 9.0, 8.0))):
        eval_run(exp, "temporal", "ssv2", metrics)
    eval_run("spread-s0", "linear", "ssv2", {"top1": 18.0, "health/effective_rank": 9.5, "health/train_top1": 30.0})
    out = tmp_path / "report"
    assert report_stage.main(["--out", str(out), "--json", str(out / "report.json"), "--results", str(tmp_path)]) == 0
    summary = (out / "summary.md").read_text()
    health = summary.split("## Feature health of the frozen features")[1].split("\n## ")[0]
    assert md_row(health, "`spread`", "2", "CLS", "ssv2") == ["11.0 ± 1.4", "0.700 ± 0.141", "45.0 ± 7.1",
                                                           "21.0 ± 1.4", "52.0 ± 0.0", "50.0 ± 0.0"]
    assert md_row(health, "`floor`", "1", "CLS", "ssv2") == ["1.0", "0.000", "9.0", "8.0", "52.0", "50.0"]
    assert md_row(health, "`spread`", "2", "linear probe, CLS", "ssv2") == ["9.5", "–", "30.0", "18.0", "–", "–"]
    assert "health/" not in summary.split("## Feature health")[0]   # not among the evaluations or verdicts
    data = json.loads((out / "report.json").read_text())
    floor = next(h for h in data["health"] if (h["name"], h["readout"]) == ("floor", "CLS"))
    assert floor["effective_rank"]["mean"] == 1.0 and floor["train_top1"]["mean"] == 9.0
    capsys.readouterr()
    assert compare_stage.main(["spread-s*", "floor-s*", "--by-method"]) == 0
    text = capsys.readouterr().out
    assert table_row(text, "temporal", "ssv2", "health/cls/effective_rank")[:3] == ["11", "±", "1.41"]
