# Post-pretraining, the paper's second training stage: captioned images (CC3M) and clips (WebVid)
# into pair shards (`dag.pair_parts` parallel parts), then contrastive training from the selected
# checkpoint. Its selected model is the experiment `<exp>-post`, which every eval_* rule evaluates
# like any other (model_of). Only with `dag.post_pretrain: true` are these jobs planned; their
# input functions (pair_inputs, pair_parts_of) are in common.smk.


rule shard_pairs:
    input:
        pair_inputs,
    output:
        directory("results/{exp}/pairs/part-{part}"),
    log:
        "logs/{exp}/shard_pairs/part-{part}.log",
    params:
        cfg=stage_json("shard_pairs"),
        sources=pair_args(),
        parts=config["dag"].get("pair_parts", 1),
        data_version=data_version(),
    threads: res("shard_pairs", "threads")
    resources:
        **job_resources("shard_pairs"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts shard-pairs {params.sources} --part {wildcards.part} --parts {params.parts}"
        " --exp {wildcards.exp} --rule shard_pairs --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule post_pretrain:
    input:
        init=lambda wc: rule_output(f"results/{wc.exp}/select/best.pt", "select_ckpt",
                                    f"results/{wc.exp}-post/select/best.pt"),
        pairs=lambda wc: pair_parts_of(wc.exp),
    output:
        best="results/{exp}-post/select/best.pt",
        selection="results/{exp}-post/select/selection.json",
        manifest="results/{exp}-post/post_pretrain/manifest.json",
    log:
        "logs/{exp}-post/post_pretrain.log",
    params:
        cfg=stage_json("post_pretrain"),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS, "pretrain", "select", "shard_pairs"),
        launch=lambda wc, threads: launcher("post_pretrain"),
    threads: res("post_pretrain", "threads")
    resources:
        **job_resources("post_pretrain"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec {params.launch} post-pretrain --init {input.init} --pairs {input.pairs}"
        " --out results/{wildcards.exp}-post/post_pretrain --select results/{wildcards.exp}-post/select"
        " --exp {wildcards.exp}-post --rule post_pretrain --config-json {params.cfg:q} >> {log} 2>&1"


# `results/<exp>-post/select/best.pt` also matches select_ckpt's pattern (exp = `<exp>-post`):
# a post-pretrained model is selected by its own stage, never from a pretraining folder.
ruleorder: post_pretrain > select_ckpt
