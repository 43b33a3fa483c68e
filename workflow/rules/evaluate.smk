# Downstream evaluations: one rule per task, one job per (experiment, dataset) listed in
# `eval.tasks`; each writes results/{exp}/eval/{task}/{dataset}.json and its own MLflow run.
# The no-pretraining baseline (`dag.no_pretrain_baseline`) gets the untrained model (init_model);
# with `dag.pretrain: false` (config/released.yaml) so does `exp` itself: `pretrain.init` as it is.


rule init_model:
    input:
        shards=lambda wc: init_model_shards(wc.exp),
        inits=lambda wc: init_inputs(wc.exp),
    output:
        "results/{exp}/init/model.pt",
    log:
        "logs/{exp}/init_model.log",
    params:
        cfg=lambda wc: exp_json(wc.exp, "pretrain"),
        shards=lambda wc, input: init_model_args(input.shards),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS, *init_sections(wc.exp)),
    threads: res("init_model", "threads")
    resources:
        **job_resources("init_model"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts init-model {params.shards} --out {output} --exp {wildcards.exp} --rule init_model"
        " --config-json {params.cfg:q} > {log} 2>&1"


# A supervised control (a grid method with `supervised`): its initial model trained on the
# dataset's train labels, the trained encoder saved for the frozen evaluations (model_of).
rule supervise:
    input:
        model="results/{exp}/init/model.pt",
        data=lambda wc: dataset_root(supervised_of(wc.exp)["dataset"]),
    output:
        model="results/{exp}/supervised/model.pt",
        result="results/{exp}/supervised/result.json",
    log:
        "logs/{exp}/supervise.log",
    params:
        cfg=lambda wc: supervised_json(wc.exp),
        dataset=lambda wc: supervised_of(wc.exp)["dataset"],
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS, "pretrain"),
        launch=lambda wc, threads: launcher("supervise"),
    threads: res("supervise", "threads")
    resources:
        **job_resources("supervise"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec {params.launch} eval-finetune --model {input.model} --dataset {params.dataset} --out {output.result}"
        " --save-model {output.model} --work results/{wildcards.exp}/supervised/work --exp {wildcards.exp}"
        " --rule supervise --config-json {params.cfg:q} >> {log} 2>&1"


rule eval_zeroshot_v2v:
    input:
        model=lambda wc: model_of(wc.exp),
        data=lambda wc: dataset_root(wc.dataset),
    output:
        "results/{exp}/eval/zeroshot_v2v/{dataset}.json",
    log:
        "logs/{exp}/eval_zeroshot_v2v/{dataset}.log",
    params:
        cfg=stage_json("eval"),
        upstream=lambda wc: upstream(wc.exp, *model_sections(wc.exp)),
    threads: res("eval_zeroshot_v2v", "threads")
    resources:
        **job_resources("eval_zeroshot_v2v"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts eval-zeroshot-v2v --model {input.model} --dataset {wildcards.dataset} --out {output}"
        " --exp {wildcards.exp} --rule eval_zeroshot_v2v --config-json {params.cfg:q} > {log} 2>&1"


rule eval_linear:
    input:
        model=lambda wc: model_of(wc.exp),
        data=lambda wc: dataset_root(wc.dataset),
    output:
        "results/{exp}/eval/linear/{dataset}.json",
    log:
        "logs/{exp}/eval_linear/{dataset}.log",
    params:
        cfg=stage_json("eval"),
        upstream=lambda wc: upstream(wc.exp, *model_sections(wc.exp)),
    threads: res("eval_linear", "threads")
    resources:
        **job_resources("eval_linear"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts eval-linear --model {input.model} --dataset {wildcards.dataset} --out {output}"
        " --features results/{wildcards.exp}/features --exp {wildcards.exp} --rule eval_linear"
        " --config-json {params.cfg:q} > {log} 2>&1"


rule eval_temporal:
    input:
        model=lambda wc: model_of(wc.exp),
        data=lambda wc: dataset_root(wc.dataset),
    output:
        "results/{exp}/eval/temporal/{dataset}.json",
    log:
        "logs/{exp}/eval_temporal/{dataset}.log",
    params:
        cfg=stage_json("eval"),
        upstream=lambda wc: upstream(wc.exp, *model_sections(wc.exp)),
    threads: res("eval_temporal", "threads")
    resources:
        **job_resources("eval_temporal"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts eval-temporal --model {input.model} --dataset {wildcards.dataset} --out {output}"
        " --features results/{wildcards.exp}/features --exp {wildcards.exp} --rule eval_temporal"
        " --config-json {params.cfg:q} > {log} 2>&1"


rule eval_finetune:
    input:
        model=lambda wc: model_of(wc.exp),
        data=lambda wc: dataset_root(wc.dataset),
    output:
        "results/{exp}/eval/finetune/{dataset}.json",
    log:
        "logs/{exp}/eval_finetune/{dataset}.log",
    params:
        cfg=stage_json("eval"),
        upstream=lambda wc: upstream(wc.exp, *model_sections(wc.exp)),
        launch=lambda wc, threads: launcher("eval_finetune"),
    threads: res("eval_finetune", "threads")
    resources:
        **job_resources("eval_finetune"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec {params.launch} eval-finetune --model {input.model} --dataset {wildcards.dataset} --out {output}"
        " --work results/{wildcards.exp}/finetune/{wildcards.dataset} --exp {wildcards.exp} --rule eval_finetune"
        " --config-json {params.cfg:q} >> {log} 2>&1"


rule eval_t2v:
    input:
        model=lambda wc: model_of(wc.exp),
        data=lambda wc: dataset_root(wc.dataset),
    output:
        "results/{exp}/eval/t2v/{dataset}.json",
    log:
        "logs/{exp}/eval_t2v/{dataset}.log",
    params:
        cfg=stage_json("eval"),
        upstream=lambda wc: upstream(wc.exp, *model_sections(wc.exp)),
        launch=lambda wc, threads: launcher("eval_t2v"),
    threads: res("eval_t2v", "threads")
    resources:
        **job_resources("eval_t2v"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec {params.launch} eval-t2v --model {input.model} --dataset {wildcards.dataset} --out {output}"
        " --work results/{wildcards.exp}/t2v/{wildcards.dataset} --exp {wildcards.exp} --rule eval_t2v"
        " --config-json {params.cfg:q} >> {log} 2>&1"
