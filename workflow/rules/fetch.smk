# Fetch stages (dag.fetch): the release's videos and captions through yt-dlp (`dag.fetch_parts`
# parallel jobs), Whisper for those without captions (dag.transcribe), then one join that writes
# availability.json and the YT-Temporal corpus whose list align_asr reads (data.yttemporal_list).
# The downloaded files live in the store (fetch.store), outside Snakemake's outputs: a rerun of a
# killed part finds them there and fetches only what is missing.


rule fetch_videos:
    input:
        ids=fetch_ids_input(),
    output:
        jsonl=f"results/{EXP}/fetch/part-{{part}}.jsonl",
        manifest=f"results/{EXP}/fetch/part-{{part}}.manifest.json",
        rejects=f"results/{EXP}/fetch/part-{{part}}.rejects.jsonl",
    log:
        f"logs/{EXP}/fetch_videos/part-{{part}}.log",
    params:
        exp=EXP,
        cfg=lambda wc: stage_json("fetch"),  # a function: `{id}` in fetch.info_url is not a wildcard
        parts=fetch_parts(),
    threads: res("fetch_videos", "threads")
    resources:
        **job_resources("fetch_videos"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts fetch-videos --part {wildcards.part} --parts {params.parts} --exp {params.exp} --rule fetch_videos"
        " --config-json {params.cfg:q} --out {output.jsonl} > {log} 2>&1"


rule transcribe:
    input:
        fetched=f"results/{EXP}/fetch/part-{{part}}.jsonl",
        model=transcribe_model_input(),
    output:
        f"results/{EXP}/transcribe/part-{{part}}.jsonl",
    log:
        f"logs/{EXP}/transcribe/part-{{part}}.log",
    params:
        exp=EXP,
        cfg=stage_json("transcribe"),
        upstream=upstream(EXP, "fetch"),
    threads: res("transcribe", "threads")
    resources:
        **job_resources("transcribe"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts transcribe --fetched {input.fetched} --exp {params.exp} --rule transcribe"
        " --config-json {params.cfg:q} --out {output} > {log} 2>&1"


rule join_fetched:
    input:
        parts=fetch_part_files(),
        transcripts=transcript_part_files(),
    output:
        availability=f"results/{EXP}/fetch/availability.json",
        video_list=config["data"]["yttemporal_list"],
    log:
        f"logs/{EXP}/join_fetched.log",
    params:
        exp=EXP,
        cfg=lambda wc: stage_json("fetch"),  # a function: `{id}` in fetch.info_url is not a wildcard
        upstream=upstream(EXP, "fetch", "transcribe"),
    resources:
        **job_resources("join_fetched"),
    conda:
        "../../envs/tvts.yaml"
    shell:
        "exec tvts join-fetched --parts {input.parts} --transcripts {input.transcripts} --exp {params.exp} --rule join_fetched"
        " --config-json {params.cfg:q} --availability {output.availability} --list {output.video_list} > {log} 2>&1"
