# The report: every experiment of this DAG side by side, from the MLflow store, against the paper.


rule report:
    input:
        lambda wc: eval_targets() + [f"results/{e}/select/selection.json" for e in pretrained_experiments()],
    output:
        summary="results/report/summary.md",
        curves=report("results/report/pretrain_curves.png", caption="../report/curves.rst", category="Pretraining"),
        retrieval=report("results/report/retrieval.png", caption="../report/retrieval.rst", category="Evaluation"),
        classification=report("results/report/classification.png", caption="../report/classification.rst",
                              category="Evaluation"),
    log:
        "logs/report.log",
    params:
        exps=" ".join(experiments()),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "tvts report --out results/report --exps {params.exps} > {log} 2>&1"
