"""Passes by name, built from the pass classes themselves (each declares `name`, `config_class`, `summary`).

A recipe entry `{name = "prune-ffn", ratio = 0.25}` becomes `PruneFfnPass(PruneFfnConfig(ratio=0.25))`.
Unknown names and unknown fields are rejected with a message that lists the valid ones. A pass
that subclasses `CalibratedPass` gets the pipeline's shared calibration.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from onnxforge.errors import ConfigError
from onnxforge.passes.base import OnnxforgePass, PassConfig
from onnxforge.passes.calibration import CalibratedPass, Calibration
from onnxforge.passes.cleanup import CleanupPass
from onnxforge.passes.fusion.fuse import FusePass
from onnxforge.passes.prune.ffn import PruneFfnPass
from onnxforge.passes.prune.heads import PruneHeadsPass
from onnxforge.passes.prune.layers import DropLayersPass
from onnxforge.passes.prune.lowrank import LowRankPass
from onnxforge.passes.prune.sparsify import SparsifyPass
from onnxforge.passes.quantize.float16 import Float16Pass
from onnxforge.passes.quantize.int8 import QuantizeInt8Pass
from onnxforge.passes.quantize.mixed_precision import MixedPrecisionPass
from onnxforge.passes.quantize.weights import QuantizeWeightsPass

PASS_CLASSES: tuple[type[OnnxforgePass], ...] = (
    CleanupPass,
    FusePass,
    PruneFfnPass,
    PruneHeadsPass,
    DropLayersPass,
    SparsifyPass,
    LowRankPass,
    QuantizeWeightsPass,
    QuantizeInt8Pass,
    MixedPrecisionPass,
    Float16Pass,
)


def registry() -> dict[str, type[OnnxforgePass]]:
    """Every pass a recipe can name."""
    return {cls.name: cls for cls in PASS_CLASSES}


def needs_calibration(name: str) -> bool:
    """Whether the pass called `name` measures activations (it subclasses CalibratedPass)."""
    return issubclass(registry()[name], CalibratedPass)


def build_config(fields: dict[str, Any], where: str) -> tuple[str, PassConfig]:
    """The pass name and validated config of one recipe table; ConfigError (prefixed by `where`) when invalid."""
    passes = registry()
    fields = dict(fields)
    name = fields.pop("name", None)
    if name not in passes:
        wanted = "has no name" if name is None else f"names an unknown pass {name!r}"
        raise ConfigError(f"{where} {wanted}: valid passes are {', '.join(sorted(passes))}")
    config_class = passes[name].config_class
    valid = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where} ({name}): unknown field {', '.join(unknown)}; valid fields are {', '.join(valid) or 'none'}"
        )
    try:
        config = config_class(**fields)
    except ConfigError as error:
        raise ConfigError(f"{where} ({name}): {error}") from None
    return name, config


def make_pass(name: str, config: PassConfig, calibration: Calibration | None = None) -> OnnxforgePass:
    """The pass object; calibrated passes get the shared calibration."""
    cls = registry()[name]
    return cls(config, calibration) if issubclass(cls, CalibratedPass) else cls(config)
