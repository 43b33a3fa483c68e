# TVTS workflow: ASR alignment -> clip shards -> pretraining -> selection -> evaluations -> report.
# Rules live in workflow/rules/, all logic in the `tvts` package; see README.md.
from snakemake.utils import min_version

min_version("9.0")


# The demo config is the default; `--configfile X` replaces it rather than merging into it,
# so every config file is self-contained.
if not workflow.overwrite_configfiles:

    configfile: "config/demo.yaml"


include: "workflow/rules/common.smk"
if fetching():  # dag.fetch: the corpus is downloaded first; its list is then a rule's output

    include: "workflow/rules/fetch.smk"


include: "workflow/rules/data.smk"
include: "workflow/rules/init.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/post.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
