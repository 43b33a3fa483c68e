# Shared helpers: config validation, stage-config params, job environment, resources, MLflow handlers. No rules.
import hashlib
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecMode

from tvts import grid, tracking
from tvts.config import ConfigError, load_yaml
from tvts.stages.common import job_environment
from tvts.workflow_config import validate_workflow_config

try:
    for path in workflow.configfiles:  # read again without aliases: an alias bomb hangs validation
        load_yaml(path)
    validate_workflow_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as err:
    sys.exit(f"Config error: {err}")

EXP = config["exp"]
try:
    GRID = grid.grid_of(config)  # methods x seeds (tvts/grid.py), or None
except ConfigError as err:
    sys.exit(f"Config error: {err}")


# Every job inherits this environment (on a Slurm node from the job's own Snakemake, which
# parses this file there too): the interpreter's bin folder first on PATH, `cpu_isa`'s pins and
# the system-metrics switch (`tracking.system_metrics`).
os.environ.update(job_environment(config.get("cpu_isa", "")) | tracking.system_metrics_env(config["tracking"]))


wildcard_constraints:
    exp=r"[A-Za-z0-9_\-]+",
    part=r"\d+",
    dataset=r"[A-Za-z0-9_\-]+",


def stage_json(*sections):
    """The named config sections as one JSON string: passed to `tvts <stage> --config-json`.

    As a rule param, any change to these sections re-triggers the rule.
    """
    return json.dumps({s: config.get(s, {}) for s in sections}, sort_keys=True)


DATA_SECTIONS = ("align_asr", "windows", "shard_clips")


def upstream(exp, *sections):
    """A hash of the config sections (and data version) that a job's inputs were made with: the
    rule param `upstream` of every rule that reads another rule's output.

    Why: Snakemake checks a job's params against the record of its outputs. When a rerun of
    that job dies, its outputs are deleted, and a consumer whose own params did not change
    counts as up to date beside the missing file: the next run plans nothing
    (snakemake/snakemake#1978). With the upstream sections in each consumer's params, a changed
    key keeps every job below it planned until each has run, whatever a killed job left.
    """
    return hashlib.sha256((exp_json(exp, *sections) + data_version()).encode()).hexdigest()[:16]


def model_sections(exp):
    """The sections behind an experiment's evaluated model: selection is not one for the baseline;
    a post-pretrained model also depends on its pair shards and its second stage."""
    if is_post(exp):
        return DATA_SECTIONS + ("pretrain", "select", "shard_pairs", "post_pretrain")
    if supervised_of(exp):
        return DATA_SECTIONS + ("pretrain", "eval")
    return DATA_SECTIONS + (("pretrain",) if is_baseline(exp) else ("pretrain", "select"))


def report_upstream():
    """`upstream` of the report: every evaluated experiment's, and the `eval` section."""
    each = " ".join(upstream(e, *model_sections(e), "eval") for e in experiments())
    return hashlib.sha256(each.encode()).hexdigest()[:16]


def res(rule_name, key, fallback=None):
    """Per-rule resources from config `resources.<rule>`, falling back to `resources.default`."""
    table = config["resources"]
    return table.get(rule_name, {}).get(key, table["default"].get(key, fallback))


def data_version():
    """The md5 of data.dvc: as a param, a new data version re-triggers alignment."""
    return tracking.data_md5("data.dvc")


WARNED_MISSING = set()


def rule_output(path, producer, consumer):
    """`path`, an output of rule `producer`, as an input of the job that writes `consumer`.

    Missing beside an existing `consumer`, it is the output of a job that died while rerunning
    (`snakemake -R pretrain` killed), and `consumer` is stale. A missing intermediate file that
    no target names is not rebuilt when its consumer looks up to date (snakemake/snakemake#1978),
    so `consumer` is forced, as `-R` would: it, `producer` and everything below run again.
    """
    # (the producer's folder exists: Snakemake also asks rules that cannot make `consumer` here,
    # e.g. select_ckpt for an `<exp>-post` experiment, which never pretrains)
    if not os.path.exists(path) and os.path.exists(consumer) and os.path.isdir(os.path.dirname(path)):
        force(consumer)
        if path not in WARNED_MISSING:
            WARNED_MISSING.add(path)
            print(f"Warning: {path} is missing but {consumer} exists: a {producer} job did not finish; "
                  f"{consumer} and everything below it are planned again.", file=sys.stderr)
    return path


def force(path):
    """Force the job that writes `path` in the DAG being built (not in a Slurm job's own Snakemake:
    it runs its one job)."""
    dag = workflow.dag
    if dag is not None and workflow.exec_mode == ExecMode.DEFAULT:
        dag.forcefiles.add(path)


def raw_input(path):
    """A raw dataset file outside DVC (e.g. the paper's YT-Temporal list) is an input when
    present; when absent, the DAG still builds (dry-run anywhere) and the job fails with a
    clear 'not found' error."""
    if os.path.exists(path):
        return ancient(path)
    print(f"Warning: {path} not found; the DAG is built, but jobs that read it will fail.", file=sys.stderr)
    return []


def fetching():
    return config["dag"].get("fetch", False)


def fetch_parts():
    return config["dag"].get("fetch_parts", 1)


def fetch_ids_input():
    """The release files to fetch (fetch.ids), an input when present (raw_input)."""
    return raw_input(config.get("fetch", {}).get("ids", "")) if fetching() else []


def fetch_part_files():
    return [f"results/{EXP}/fetch/part-{i}.jsonl" for i in range(fetch_parts())]


def transcript_part_files():
    """The transcribe parts that the join reads: one per fetch part with dag.transcribe, else none."""
    if not config["dag"].get("transcribe", False):
        return []
    return [f"results/{EXP}/transcribe/part-{i}.jsonl" for i in range(fetch_parts())]


def transcribe_model_input():
    """The local Whisper model folder, an input when present (raw_input); none without dag.transcribe."""
    return raw_input(config.get("transcribe", {}).get("model", "")) if config["dag"].get("transcribe", False) else []


def video_list_input():
    """align_asr's list: the join's output with dag.fetch (so fetching is planned ahead of
    alignment), else the raw list (raw_input)."""
    return config["data"]["yttemporal_list"] if fetching() else raw_input(config["data"]["yttemporal_list"])


def asr_parts(exp):
    return [f"results/{exp}/asr/part-{i}.jsonl" for i in range(config["dag"]["align_parts"])]


def shard_parts():
    """`dag.shard_parts`, by default one shard_clips job per align_asr part."""
    return config["dag"].get("shard_parts", config["dag"]["align_parts"])


def asr_parts_of_shard(exp, part):
    """The align_asr parts that shard part `part` reads: every `shard_parts`-th one. A retried
    shard job thus redoes its own videos only, and a changed alignment part its shard part only."""
    return asr_parts(exp)[part::shard_parts()]


def shard_part_dirs(exp):
    return [f"results/{exp}/shards/part-{p}" for p in range(shard_parts())]


def pair_sources():
    """The configured raw pair inputs, by shard-pairs option (absent keys: that source is not used)."""
    data = config["data"]
    keys = {"cc3m": "--cc3m", "cc3m_images": "--cc3m-images", "webvid": "--webvid", "webvid_videos": "--webvid-videos"}
    return {opt: data[key] for key, opt in keys.items() if data.get(key)}


def pair_inputs(wildcards):
    """Every configured raw pair file or folder, as an input when present (raw_input)."""
    return [p for path in pair_sources().values() for p in [raw_input(path)] if p]


def pair_args():
    """The shard-pairs options naming the raw inputs, quoted for the shell."""
    return " ".join(f"{opt} {shlex.quote(path)}" for opt, path in pair_sources().items())


def pair_parts_of(exp):
    """The shard_pairs part folders: built once, under results/<exp of the config>, like the clip shards."""
    return [f"results/{EXP}/pairs/part-{i}" for i in range(config["dag"].get("pair_parts", 1))]


def launcher(rule_name):
    """The launcher of a training step (tvts/launch.py) - torchrun with one process per GPU the job
    got (one on CPU); with `nodes`/`tasks` > 1, one torchrun agent per Slurm task through srun.
    Rules `exec` it, so Slurm's signals reach torchrun, not a shell."""
    gpus = res(rule_name, "gpus", 0)
    cpus = res(rule_name, "threads")
    return f"tvts launch --gpus {gpus} --agents {agents(rule_name)} --cpus-per-agent {cpus} --"


def agents(rule_name):
    nodes = res(rule_name, "nodes", 1)
    return res(rule_name, "tasks", nodes)


def job_resources(rule_name):
    """Snakemake resources of a rule from config `resources.<rule>` (what the Slurm executor maps
    to sbatch options): mem_mb (per node) and runtime (minutes) for every rule; for GPU rules
    `gpu` (+ `gpu_model`, `cpus_per_gpu`); for several agents `nodes`, `tasks`, `mpi` and a
    per-node `gres`, so each node's torchrun agent gets its GPUs; `signal_before_end_s` asks
    Slurm for SIGTERM that many seconds before the time limit (checkpoint, exit 75, retry)."""
    out = {"mem_mb": res(rule_name, "mem_mb"), "runtime": res(rule_name, "runtime")}
    gpus, model = res(rule_name, "gpus", 0), res(rule_name, "gpu_model")
    if agents(rule_name) > 1:
        out |= {"nodes": res(rule_name, "nodes", 1), "tasks": agents(rule_name), "mpi": "srun",
                "tasks_per_gpu": 0, "cpus_per_task": res(rule_name, "threads")}
        if gpus:
            out["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
    elif gpus:
        out["gpu"] = gpus
        if model:
            out["gpu_model"] = model
        if res(rule_name, "cpus_per_gpu"):
            out["cpus_per_gpu"] = res(rule_name, "cpus_per_gpu")
    if res(rule_name, "signal_before_end_s"):
        out["slurm_extra"] = f"--signal=TERM@{res(rule_name, 'signal_before_end_s')}"
    return out


BASELINE = config["dag"].get("no_pretrain_baseline", "")
PRETRAIN = config["dag"].get("pretrain", True)  # false: `exp` evaluates pretrain.init as it is (config/released.yaml)
REPORT_DIR = config["dag"].get("report_dir", "results/report")


def seeded(name):
    """One experiment per seed of the method (`<name>-s<seed>`; the baseline takes the grid's seeds),
    or the name alone without a grid."""
    return [grid.experiment_name(name, s) for s in GRID.method_seeds(name)] if GRID else [name]


def pretrained_experiments():
    """The experiments that pretrain: `exp`, or every (method, seed) of the grid's pretrained methods;
    none with `dag.pretrain: false`."""
    if not PRETRAIN:
        return []
    return [e for m in GRID.pretrained_methods for e in seeded(m)] if GRID else [EXP]


def baseline_experiments():
    """The experiments of the initial model: the no-pretraining baseline, and the grid's `no_pretrain` methods."""
    untrained = [e for m in GRID.untrained_methods for e in seeded(m)] if GRID else []
    released = [] if PRETRAIN else [EXP]   # `dag.pretrain: false`: `exp` is its initial model
    return released + (seeded(BASELINE) if BASELINE else []) + untrained


def post_experiments():
    """`<exp>-post` for every pretrained experiment when `dag.post_pretrain` (rule post_pretrain)."""
    return [f"{e}-post" for e in pretrained_experiments()] if config["dag"].get("post_pretrain", False) else []


def experiments():
    """The experiments this DAG evaluates: the pretrained ones, their post-pretrained models, then
    the no-pretraining baseline(s)."""
    return pretrained_experiments() + post_experiments() + baseline_experiments()


def is_post(exp):
    return exp in post_experiments()


def is_baseline(exp):
    return exp in baseline_experiments()


def uses_inits(exp):
    """Whether `exp` starts from the init stages' outputs: with `dag.inits`, every experiment that
    pretrains or is a `no_pretrain` method; never the no-pretraining baseline (random weights)."""
    return config["dag"].get("inits", False) and exp in pretrained_experiments() + baseline_experiments() \
        and not (BASELINE and exp in seeded(BASELINE))


def init_inputs(exp):
    """The init stages' outputs that `exp`'s pretrain (or init_model) job reads: both, or none."""
    return list(grid.init_outputs(EXP)) if uses_inits(exp) else []


def init_sections(exp):
    """The init stages' config sections behind `exp`'s initial model (its `upstream`)."""
    return ("init_image_mae", "init_text_mlm") if uses_inits(exp) else ()


def init_json(section, part):
    """An init stage's section and the encoder sizes it trains (`pretrain.model.<part>`), as JSON."""
    model = config.get("pretrain", {}).get("model", {})
    return json.dumps({section: config.get(section, {}), "pretrain": {"model": {part: model.get(part, {})}}},
                      sort_keys=True)


def model_of(exp):
    """The checkpoint an experiment's evaluations load: the selected one, the untrained model, or
    a supervised control's trained one."""
    if supervised_of(exp):
        return f"results/{exp}/supervised/model.pt"
    return f"results/{exp}/init/model.pt" if is_baseline(exp) else f"results/{exp}/select/best.pt"


def supervised_of(exp):
    """The `supervised` section of `exp`'s grid method (a supervised control), or None."""
    return GRID.supervised_of(grid.parse_experiment(exp)[0]) if GRID else None


def supervised_json(exp):
    """The eval parts of `exp`'s supervised training: the datasets, the views, and `eval.finetune`
    under the method's own recipe."""
    ev, sup = config.get("eval", {}), supervised_of(exp) or {}
    recipe = grid.deep_merge(ev.get("finetune", {}), sup.get("finetune", {}))
    return json.dumps({"eval": {"datasets": ev.get("datasets", {}), "views": ev.get("views", {}),
                                "finetune": recipe}}, sort_keys=True)


def init_model_shards(exp):
    """The shards init_model scores the initial model on (and trains a scratch tokenizer on); none
    with `dag.pretrain: false`, where nothing is sharded and the model is taken as it is."""
    return shards_of(exp) if PRETRAIN else []


def init_model_args(shards):
    return f"--shards {shlex.quote(str(shards))}" if shards else ""


def shards_of(exp):
    """Every experiment of a config trains on the same shard set, built once under results/<exp of the config>."""
    return f"results/{EXP}/shards/set.json"


def exp_json(exp, *sections):
    """Like `stage_json`, for one experiment: a grid experiment gets its method's overrides and seed."""
    method, seed = grid.parse_experiment(exp)
    if GRID is None or seed is None or (method not in GRID.methods and method != BASELINE):
        merged = dict(config)
    else:
        merged = config | grid.method_config(config, method, seed)
    if uses_inits(exp):
        merged["pretrain"] = grid.with_inits(merged.get("pretrain", {}), EXP)
    return json.dumps({s: merged.get(s, {}) for s in sections}, sort_keys=True)


def dataset_root(name):
    """A downstream dataset's folder (eval.datasets.<name>.root), an input of its evaluations."""
    datasets = config.get("eval", {}).get("datasets", {})
    if name not in datasets:
        raise WorkflowError(f"eval.datasets.{name}: no such dataset (known: {', '.join(sorted(datasets))})")
    return raw_input(datasets[name]["root"])


def eval_targets():
    tasks = config.get("eval", {}).get("tasks", {})
    return [f"results/{exp}/eval/{task}/{ds}.json" for exp in experiments()
            for task, names in tasks.items() for ds in names]


def all_targets():
    targets = [f"results/{e}/select/selection.json" for e in pretrained_experiments() + post_experiments()]
    if config["dag"].get("text_only_baseline", False):
        targets.append(f"results/{EXP}/text_only/manifest.json")
    targets += eval_targets()
    if config["dag"].get("report", False):
        targets.append(f"{REPORT_DIR}/summary.md")
    return targets


# With nothing to be done Snakemake skips `onstart`, so the spool of jobs that ended while the store
# was away is replayed when the workflow is read, in order, by any invocation but a job's own
# Snakemake (a Slurm job's; only when a spool is left over: replaying imports mlflow). A spool
# whose job still runs is locked, and left alone.
os.environ[tracking.EXPERIMENT_ENV] = config["tracking"]["experiment"]
if workflow.exec_mode == ExecMode.DEFAULT and tracking.pending_files():
    tracking.mark_stale_runs_killed(config["tracking"]["experiment"])


onstart:
    # One store migration and one parent run per invocation, before any job starts
    # (parallel first use of a new SQLite store races on the schema migration).
    os.environ[tracking.COMMIT_ENV] = tracking.git_commit(workflow.basedir)
    os.environ[tracking.PAPER_CONFIG_ENV] = str(config["tracking"].get("paper_config", False)).lower()
    tracking.init_store()
    # every leftover spool replayed in order, then RUNNING runs of dead jobs and invocations KILLED
    tracking.mark_stale_runs_killed(config["tracking"]["experiment"])
    command = shlex.join(sys.argv)
    os.environ[tracking.PARENT_ENV] = tracking.start_parent_run(EXP, {"config": config}, command)


onsuccess:
    if os.environ.get(tracking.PARENT_ENV):
        tracking.end_run(os.environ[tracking.PARENT_ENV], ok=True)


onerror:
    if os.environ.get(tracking.PARENT_ENV):
        tracking.end_run(os.environ[tracking.PARENT_ENV], ok=False)
