"""Passes by name: each name maps to its pass class and config class.

A recipe entry `{name = "prune-ffn", ratio = 0.25}` becomes `PruneFfnPass(PruneFfnConfig(ratio=0.25))`.
Unknown names and unknown fields are rejected with a message that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx_ir as ir

from onnxforge.passes.base import PassConfig


@dataclass(frozen=True)
class RegisteredPass:
    """A pass class, its config class, a one-line description, and whether it needs calibration."""

    make: Callable[..., ir.passes.PassBase]
    config: type[PassConfig]
    summary: str
    data_aware: bool = False


def registry() -> dict[str, RegisteredPass]:
    """Every pass a recipe can name."""
    from onnxforge.passes.catalog import PASSES

    return PASSES


def build_config(fields: dict[str, Any], where: str) -> tuple[str, PassConfig]:
    """The pass name and validated config of one recipe table; ValueError (prefixed by `where`) when invalid."""
    passes = registry()
    fields = dict(fields)
    name = fields.pop("name", None)
    if name not in passes:
        wanted = "has no name" if name is None else f"names an unknown pass {name!r}"
        raise ValueError(f"{where} {wanted}: valid passes are {', '.join(sorted(passes))}")
    entry = passes[name]
    valid = [f.name for f in dataclasses.fields(entry.config)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ValueError(
            f"{where} ({name}): unknown field {', '.join(unknown)}; valid fields are {', '.join(valid) or 'none'}"
        )
    try:
        config = entry.config(**fields)
    except ValueError as error:
        raise ValueError(f"{where} ({name}): {error}") from None
    return name, config


def make_pass(name: str, config: PassConfig, calibration: Any = None) -> ir.passes.PassBase:
    """The pass object; data-aware passes get the shared calibration."""
    entry = registry()[name]
    return entry.make(config, calibration) if entry.data_aware else entry.make(config)
