"""Methods x seeds: the experiments of a comparison, their configs, and mean +- std over seeds.

A config with a `grid` section trains every method with every seed on the same shards:

    grid:
      seeds: [0, 1, 2]
      methods:
        tvts: {}
        videomae: {pretrain: {method: videomae}, select: {metric: loss_recon}}

Each (method, seed) is the experiment `<method>-s<seed>`: its `pretrain` and `select` sections
are the config's, deep-merged with the method's overrides, with `pretrain.seed = seed`. The
no-pretraining baseline (`dag.no_pretrain_baseline: random`) becomes `random-s<seed>` too.
A method with `no_pretrain: true` is not pretrained: like the baseline, each of its experiments
evaluates the model as pretraining would start it (rule init_model). With `dag.inits`, every
experiment but the baseline starts from the init stages' outputs (`with_inits`), so
`inits: {no_pretrain: true}` is "the inits alone, no video pretraining". A method's `seeds` runs
it on those of the grid's seeds only: `seeds: [0]` for a model the seed does not change (the
inits alone, a weightless feature), whose one experiment then pairs with every seed of the others.
A method with `supervised: {dataset: ssv2, finetune: {...}}` (and `no_pretrain: true`) is a
supervised control: its initial model is trained on that dataset's train labels (rule supervise:
`tvts eval-finetune` with `eval.finetune` under the method's `finetune`, `--save-model`), and its
evaluations read the trained encoder frozen, like every other method's.
Readers (`tvts compare --by-method`, the report) group experiments by that name back into
(method, seed) and aggregate each metric as mean +- sample std (ddof 1) over the seeds.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from tvts.config import require

_EXP = re.compile(r"^(?P<method>[A-Za-z0-9_\-]+?)-s(?P<seed>\d+)$")
OVERRIDABLE = ("pretrain", "select")  # the sections a method may change
FLAGS = ("no_pretrain", "seeds", "supervised")  # and what a method may say about itself
INIT_IMAGE_MAE = "results/{exp}/init_image_mae/model.pt"   # rule init_image_mae
INIT_TEXT_MLM = "results/{exp}/init_text_mlm"              # rule init_text_mlm


@dataclass(frozen=True)
class GridConfig:
    seeds: tuple[int, ...] = (0,)
    methods: dict[str, dict] = field(default_factory=dict)  # method -> {section: overrides}

    def check(self, where: str) -> None:
        require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), where, "seeds",
                "must list at least one seed, without repeats")
        require(all(isinstance(s, int) and s >= 0 for s in self.seeds), where, "seeds", "must be integers >= 0")
        require(len(self.methods) >= 1, where, "methods", "must name at least one method")
        for name, sections in self.methods.items():
            require(re.fullmatch(r"[A-Za-z0-9_]+", name) is not None, f"{where}.methods", name,
                    "method names use letters, digits and _ only (the experiment is <method>-s<seed>)")
            unknown = sorted(set(sections or {}) - set(OVERRIDABLE) - set(FLAGS))
            require(not unknown, f"{where}.methods.{name}", unknown[0] if unknown else "",
                    f"only {', '.join(OVERRIDABLE)} can be overridden per method (and {', '.join(FLAGS)} set)")
            require(isinstance((sections or {}).get("no_pretrain", False), bool), f"{where}.methods.{name}",
                    "no_pretrain", "must be true or false")
            self.check_supervised(name, (sections or {}), where)
            own = (sections or {}).get("seeds", self.seeds)
            require(isinstance(own, (list, tuple)) and len(own) >= 1 and len(set(own)) == len(own)
                    and set(own) <= set(self.seeds), f"{where}.methods.{name}", "seeds",
                    f"must list distinct seeds of grid.seeds {list(self.seeds)}")
        require(bool(self.pretrained_methods), where, "methods", "must pretrain at least one method")

    @staticmethod
    def check_supervised(name: str, sections: dict, where: str) -> None:
        """A supervised control names its dataset, may give a recipe, and is not pretrained."""
        if "supervised" not in sections:
            return
        sup, at = sections["supervised"], f"{where}.methods.{name}.supervised"
        require(isinstance(sup, dict) and isinstance(sup.get("dataset"), str), f"{where}.methods.{name}", "supervised",
                "must be a mapping naming a dataset of eval.datasets: {dataset: ssv2, finetune: {...}}")
        unknown = sorted(set(sup) - {"dataset", "finetune"})
        require(not unknown, at, unknown[0] if unknown else "", "only dataset and finetune can be set")
        require(isinstance(sup.get("finetune", {}), dict), at, "finetune", "must be a mapping (eval.finetune keys)")
        require(sections.get("no_pretrain", False) is True, f"{where}.methods.{name}", "no_pretrain",
                "must be true for a supervised control: its initial model is trained on labels, not pretrained")

    def supervised_of(self, method: str) -> dict | None:
        """The `supervised` section of a supervised control, else None."""
        return (self.methods.get(method) or {}).get("supervised")

    @property
    def untrained_methods(self) -> tuple[str, ...]:
        """The methods with `no_pretrain: true`: their experiments evaluate the initial model."""
        return tuple(m for m, sections in self.methods.items() if (sections or {}).get("no_pretrain", False))

    def method_seeds(self, method: str) -> tuple[int, ...]:
        """The seeds `method` runs: its own `seeds`, else the grid's."""
        return tuple((self.methods.get(method) or {}).get("seeds", self.seeds))

    @property
    def pretrained_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m not in self.untrained_methods)


def grid_of(config: dict) -> GridConfig | None:
    """The `grid` section as a checked GridConfig, or None when the config has none."""
    raw = config.get("grid")
    if not raw:
        return None
    grid = GridConfig(seeds=tuple(raw.get("seeds", (0,))), methods=dict(raw.get("methods") or {}))
    grid.check("grid")
    return grid


def experiment_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


def parse_experiment(exp: str) -> tuple[str, int | None]:
    """`tvts-s2` -> ("tvts", 2); a name without a seed suffix is its own method, seed None."""
    m = _EXP.match(exp)
    return (m["method"], int(m["seed"])) if m else (exp, None)


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of `base` with `override` merged in, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def method_config(config: dict, method: str, seed: int) -> dict[str, Any]:
    """The `pretrain` and `select` sections of experiment `<method>-s<seed>`."""
    grid = grid_of(config)
    overrides = (grid.methods.get(method) if grid else None) or {}
    out = {s: deep_merge(config.get(s, {}), overrides.get(s, {})) for s in OVERRIDABLE}
    out["pretrain"]["seed"] = seed
    return out


def init_outputs(exp: str) -> tuple[str, str]:
    """The init stages' outputs for the config whose `exp` is `exp`: (image MAE checkpoint, text model folder)."""
    return INIT_IMAGE_MAE.format(exp=exp), INIT_TEXT_MLM.format(exp=exp)


def with_inits(pretrain: dict, exp: str) -> dict:
    """A copy of the `pretrain` section that starts from the init stages' outputs of config `exp`:
    the video encoder from the image MAE (`init: mae:`), the text encoder from the masked-LM folder."""
    image, text = init_outputs(exp)
    return deep_merge(pretrain, {"init": f"mae:{image}", "model": {"text": {"model": text}}})


# ---- aggregation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Aggregate:
    mean: float
    std: float       # sample std (ddof 1); 0 for a single seed
    n: int
    values: tuple[float, ...]

    def format(self, fmt=lambda v: f"{v:.2f}") -> str:
        return f"{fmt(self.mean)} ± {fmt(self.std)}" + ("" if self.n > 1 else " (1 seed)")


def aggregate(values: Iterable[float]) -> Aggregate | None:
    vals = tuple(float(v) for v in values if v is not None and v == v)
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return Aggregate(mean, math.sqrt(var), len(vals), vals)


def group_by_method(exps: Iterable[str]) -> dict[str, list[str]]:
    """Experiments grouped by method, in first-seen order; seeds sorted within a method."""
    groups: dict[str, list[str]] = {}
    for exp in exps:
        groups.setdefault(parse_experiment(exp)[0], []).append(exp)
    return {m: sorted(es, key=lambda e: parse_experiment(e)[1] or 0) for m, es in groups.items()}


def is_grid(exps: Iterable[str]) -> bool:
    """Whether some method has several seeds among `exps` (then the report aggregates)."""
    return any(len(es) > 1 for es in group_by_method(exps).values())
