# The report: every experiment of this DAG side by side, from the MLflow store, against the paper.


rule report:
    input:
        lambda wc: eval_targets() + [f"results/{e}/select/selection.json" for e in pretrained_experiments()],
    output:
        summary=f"{REPORT_DIR}/summary.md",
        page=report(f"{REPORT_DIR}/summary.html", caption="../report/summary.rst", category="Summary"),
        curves=report(f"{REPORT_DIR}/pretrain_curves.png", caption="../report/curves.rst", category="Pretraining"),
        retrieval=report(f"{REPORT_DIR}/retrieval.png", caption="../report/retrieval.rst", category="Evaluation"),
        classification=report(f"{REPORT_DIR}/classification.png", caption="../report/classification.rst",
                              category="Evaluation"),
        methods=report(f"{REPORT_DIR}/methods.png", caption="../report/methods.rst", category="Evaluation"),
        temporal=report(f"{REPORT_DIR}/temporal.png", caption="../report/temporal.rst", category="Evaluation"),
    log:
        "logs/report.log",
    params:
        exps=" ".join(experiments()),
        upstream=lambda wc: report_upstream(),
        out=lambda wc, output: os.path.dirname(output.summary),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts report --out {params.out} --exps {params.exps} > {log} 2>&1"
