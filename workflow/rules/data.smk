# Data stages: ASR alignment (N parallel parts), clip sharding (`dag.shard_parts` parallel parts)
# and their union into one shard set. Every rule `exec`s its command:
# the job's process is the `tvts` process, which dies with Snakemake (tvts/cli.py).


rule align_asr:
    input:
        video_list=video_list_input(),
    output:
        jsonl="results/{exp}/asr/part-{part}.jsonl",
        manifest="results/{exp}/asr/part-{part}.manifest.json",
        rejects="results/{exp}/asr/part-{part}.rejects.jsonl",
    log:
        "logs/{exp}/align_asr/part-{part}.log",
    params:
        cfg=stage_json("align_asr", "windows"),
        parts=config["dag"]["align_parts"],
        data_version=data_version(),
    threads: res("align_asr", "threads")
    resources:
        **job_resources("align_asr"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts align-asr --list {input.video_list:q} --part {wildcards.part}"
        " --parts {params.parts} --exp {wildcards.exp} --rule align_asr --config-json {params.cfg:q}"
        " --out {output.jsonl} > {log} 2>&1"


rule shard_clips:
    input:
        asr=lambda wc: asr_parts_of_shard(wc.exp, int(wc.part)),
    output:
        directory("results/{exp}/shards/part-{part}"),
    log:
        "logs/{exp}/shard_clips/part-{part}.log",
    params:
        cfg=stage_json("shard_clips"),
        upstream=lambda wc: upstream(wc.exp, "align_asr", "windows"),
    threads: res("shard_clips", "threads")
    resources:
        **job_resources("shard_clips"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts shard-clips --asr {input.asr} --workers {threads}"
        " --exp {wildcards.exp} --rule shard_clips --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule shard_union:
    input:
        parts=lambda wc: shard_part_dirs(wc.exp),
    output:
        "results/{exp}/shards/set.json",
    log:
        "logs/{exp}/shard_union.log",
    params:
        upstream=lambda wc: upstream(wc.exp, *DATA_SECTIONS),
    resources:
        **job_resources("shard_union"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts shard-union --parts {input.parts} --exp {wildcards.exp} --rule shard_union --out {output} > {log} 2>&1"
