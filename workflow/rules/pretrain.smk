# Pretraining (torchrun, resumable), the text-only sort baseline, and checkpoint selection.


rule pretrain:
    input:
        shards=lambda wc: shards_of(wc.exp),
        inits=lambda wc: init_inputs(wc.exp),
    output:
        "results/{exp}/pretrain/manifest.json",
    log:
        "logs/{exp}/pretrain.log",
    params:
        cfg=lambda wc: exp_json(wc.exp, "pretrain"),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS, *init_sections(wc.exp)),
        launch=lambda wc, threads: launcher("pretrain"),
    threads: res("pretrain", "threads")
    resources:
        **job_resources("pretrain"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec {params.launch} pretrain --shards {input.shards} --out results/{wildcards.exp}/pretrain"
        " --exp {wildcards.exp} --rule pretrain --config-json {params.cfg:q} >> {log} 2>&1"


rule text_only_baseline:
    input:
        shards=lambda wc: shards_of(wc.exp),
    output:
        "results/{exp}/text_only/manifest.json",
    log:
        "logs/{exp}/text_only_baseline.log",
    params:
        cfg=stage_json("pretrain"),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS),
        launch=lambda wc, threads: launcher("text_only_baseline"),
    threads: res("text_only_baseline", "threads")
    resources:
        **job_resources("text_only_baseline"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec {params.launch} pretrain --text-only --shards {input.shards} --out results/{wildcards.exp}/text_only"
        " --exp {wildcards.exp} --rule text_only_baseline --config-json {params.cfg:q} >> {log} 2>&1"


rule select_ckpt:
    input:
        pretrain=lambda wc: rule_output(f"results/{wc.exp}/pretrain/manifest.json", "pretrain",
                                        f"results/{wc.exp}/select/best.pt"),
        shards=lambda wc: shards_of(wc.exp),
    output:
        best="results/{exp}/select/best.pt",
        selection="results/{exp}/select/selection.json",
    log:
        "logs/{exp}/select_ckpt.log",
    params:
        cfg=lambda wc: exp_json(wc.exp, "select"),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS, "pretrain"),
    threads: res("select_ckpt", "threads")
    resources:
        **job_resources("select_ckpt"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts select-ckpt --pretrain results/{wildcards.exp}/pretrain --shards {input.shards}"
        " --out results/{wildcards.exp}/select --exp {wildcards.exp} --rule select_ckpt"
        " --config-json {params.cfg:q} > {log} 2>&1"
