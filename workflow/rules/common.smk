# Shared helpers: config validation, stage-config params, resources, MLflow handlers. No rules.
import json
import os
import shlex
import sys

from tvts import tracking
from tvts.config import ConfigError, validate_workflow_config

try:
    validate_workflow_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as err:
    sys.exit(f"Config error: {err}")

EXP = config["exp"]


wildcard_constraints:
    exp=r"[A-Za-z0-9_\-]+",
    part=r"\d+",


def stage_json(*sections):
    """The named config sections as one JSON string: passed to `tvts <stage> --config-json`.

    As a rule param, any change to these sections re-triggers the rule.
    """
    return json.dumps({s: config.get(s, {}) for s in sections}, sort_keys=True)


def res(rule_name, key, fallback=None):
    """Per-rule resources from config `resources.<rule>`, falling back to `resources.default`."""
    table = config["resources"]
    return table.get(rule_name, {}).get(key, table["default"].get(key, fallback))


def data_version():
    """The md5 of data.dvc: as a param, a new data version re-triggers alignment."""
    return tracking.data_md5("data.dvc")


def raw_input(path):
    """A raw dataset file outside DVC (e.g. the paper's YT-Temporal list) is an input when
    present; when absent, the DAG still builds (dry-run anywhere) and the job fails with a
    clear 'not found' error."""
    if os.path.exists(path):
        return ancient(path)
    print(f"Warning: {path} not found; the DAG is built, but jobs that read it will fail.", file=sys.stderr)
    return []


def asr_parts(exp):
    return [f"results/{exp}/asr/part-{i}.jsonl" for i in range(config["dag"]["align_parts"])]


def torchrun(rule_name):
    """The launcher of a training rule: torchrun with one process per GPU (one on CPU).

    `resources.<rule>.gpus` (0 = CPU) sets the processes per node; the log is appended to,
    so a resumed job keeps the lines of its earlier attempts.
    """
    gpus = res(rule_name, "gpus", 0)
    return f"torchrun --standalone --nnodes 1 --nproc-per-node {max(1, gpus)} -m tvts.cli"


def all_targets():
    targets = [f"results/{EXP}/select/selection.json"]
    if config["dag"].get("text_only_baseline", False):
        targets.append(f"results/{EXP}/text_only/manifest.json")
    return targets


onstart:
    # One store migration and one parent run per invocation, before any job starts
    # (parallel first use of a new SQLite store races on the schema migration).
    os.environ[tracking.EXPERIMENT_ENV] = config["tracking"]["experiment"]
    os.environ[tracking.COMMIT_ENV] = tracking.git_commit(workflow.basedir)
    tracking.init_store()
    command = shlex.join(sys.argv)
    os.environ[tracking.PARENT_ENV] = tracking.start_parent_run(EXP, {"config": config}, command)


onsuccess:
    if os.environ.get(tracking.PARENT_ENV):
        tracking.end_run(os.environ[tracking.PARENT_ENV], ok=True)


onerror:
    if os.environ.get(tracking.PARENT_ENV):
        tracking.end_run(os.environ[tracking.PARENT_ENV], ok=False)
