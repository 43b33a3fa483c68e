# The paper's starting point in miniature (dag.inits): an image MAE on single train frames (the
# ImageMAE stand-in) and a masked-LM text encoder on the train narration (the DistilBERT
# stand-in). Both are built once per config, under results/<exp>/ like the shards, and every
# experiment that uses them (common.smk `init_inputs`) reads them: `init: mae:<model.pt>` and
# `model.text.model: <folder>` in its pretrain section.


rule init_image_mae:
    input:
        shards=lambda wc: shards_of(wc.exp),
    output:
        "results/{exp}/init_image_mae/model.pt",
    log:
        "logs/{exp}/init_image_mae.log",
    params:
        cfg=init_json("init_image_mae", "video"),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS),
    threads: res("init_image_mae", "threads")
    resources:
        **job_resources("init_image_mae"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts init-image-mae --shards {input.shards} --out {output} --exp {wildcards.exp}"
        " --rule init_image_mae --config-json {params.cfg:q} > {log} 2>&1"


rule init_text_mlm:
    input:
        shards=lambda wc: shards_of(wc.exp),
    output:
        directory("results/{exp}/init_text_mlm"),
    log:
        "logs/{exp}/init_text_mlm.log",
    params:
        cfg=init_json("init_text_mlm", "text"),
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS),
    threads: res("init_text_mlm", "threads")
    resources:
        **job_resources("init_text_mlm"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts init-text-mlm --shards {input.shards} --out {output} --exp {wildcards.exp}"
        " --rule init_text_mlm --config-json {params.cfg:q} > {log} 2>&1"
