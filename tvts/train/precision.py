"""What `runtime.amp` and `runtime.compile` do, on every device: autocast and torch.compile.

`amp: bf16` (or `fp16`) autocasts on CUDA and on the CPU alike; where this torch's autocast
cannot (no autocast for the device type, or not in that dtype) the run logs so once and trains
in float32. Parameters, gradients, optimiser states and checkpoints stay float32 either way:
autocast only lowers the precision of the matmuls it runs, and the losses
(`tvts.models.tvts.contrastive_loss`, `sort_loss`) leave it for float32.

`compile: true` runs the training engine through torch.compile (inductor on CUDA and CPU). It
compiles lazily, on the first step; a failure there is raised as `CompileError`, naming the
stage and the setting that turns compiling off.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings

import torch
import torch.nn as nn

from tvts.config import ConfigError

log = logging.getLogger("tvts.train.precision")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_SAID: set[tuple[str, str]] = set()


def autocast_dtype(device: torch.device, amp: str | None) -> torch.dtype | None:
    """The dtype `amp` autocasts to on `device`, or None for float32 (`off`, or unsupported here:
    logged once per process and device type)."""
    if amp in (None, "off"):
        return None
    dtype = AMP_DTYPES[amp]
    if supports(device.type, dtype):
        return dtype
    if (device.type, amp) not in _SAID:
        _SAID.add((device.type, amp))
        log.warning("amp %s: this torch's autocast does not support %s on %s; training in float32", amp, dtype,
                    device.type)
    return None


@functools.lru_cache(maxsize=None)
def supports(device_type: str, dtype: torch.dtype) -> bool:
    """Whether torch.autocast on `device_type` runs in `dtype` (it warns and disables itself
    otherwise). Asked once per process: every micro-step autocasts."""
    if not torch.amp.is_autocast_available(device_type):
        return False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast(device_type, dtype=dtype):
            pass
    return not any("not supported" in str(w.message) for w in caught)


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Autocast to `amp`'s dtype on `device`, or a no-op (float32)."""
    dtype = autocast_dtype(device, amp)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


class CompileError(ConfigError):
    """torch.compile failed: one line naming the stage and the setting that turns it off (a
    ConfigError, so the stage exits with that line, as for a bad key)."""


class Compiled(nn.Module):
    """A torch.compile'd engine whose compile failure (on its first call) is a `CompileError`.

    `_orig_mod` is the module compiled, as on what torch.compile returns (the core reads it to
    know that the engine is compiled and must not run under the FLOP counter).
    """

    def __init__(self, engine: nn.Module, stage: str, setting: str):
        super().__init__()
        # dynamic=False: a training step's shapes are fixed (whole batches; post-pretraining's
        # image and clip steps are two shapes, two graphs), so no recompile to dynamic shapes
        self.compiled, self.stage, self.setting = torch.compile(engine, dynamic=False), stage, setting

    @property
    def _orig_mod(self) -> nn.Module:
        return self.compiled._orig_mod

    def forward(self, *args, **kwargs):
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as err:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise CompileError(f"{self.setting}: torch.compile failed in stage {self.stage} "
                               f"({type(err).__name__}: {first}); set it to false to train without compiling") from err


def compile_engine(engine: nn.Module, stage: str, setting: str) -> nn.Module:
    """`engine` compiled, its failures named (`Compiled`).

    Args:
        stage: the stage compiling (e.g. `pretrain`), for the error.
        setting: the config key that turns compiling off (e.g. `pretrain.runtime.compile`).
    """
    return Compiled(engine, stage, setting)
