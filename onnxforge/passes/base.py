"""What every pass shares: it declares itself, validates its config, checks its preconditions, logs.

A pass is an `onnx_ir.passes.InPlacePass` subclass of `OnnxforgePass` with three class attributes:
its registry `name` (what recipes write), its `config_class` (a frozen dataclass validated on
construction) and a one-line `summary`. Preconditions go in `requires()` (a refusal is a
`PassRefused`, one line for the user); `call()` returns `PassResult(model, modified)` with an honest
`modified`. A pass never writes to disk: it reads the model's shape facts and appends one entry
(what it changed, parameters and bytes before/after) to a log kept in the model's metadata, which
the pipeline moves into `onnxforge.json` before it saves the model once.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import numpy as np
import onnx_ir as ir

from onnxforge.errors import BadInput, ConfigError
from onnxforge.folder import FACTS_KEY, MS_DOMAIN, PASS_LOG_KEY


@dataclasses.dataclass(frozen=True)
class PassConfig:
    """Base of every pass config: subclasses add fields and check them in `validate`."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # TOML gives lists; configs hold tuples (frozen, hashable)
            if isinstance(getattr(self, field.name), list):
                object.__setattr__(self, field.name, tuple(getattr(self, field.name)))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field that is wrong and the values allowed."""

    def to_json(self) -> dict[str, Any]:
        """The config's fields as plain JSON values."""
        return dataclasses.asdict(self)


def check_fraction(name: str, value: float, high: float = 1.0) -> None:
    """A fraction in [0, high): anything else is a ConfigError naming the field."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < high:
        raise ConfigError(f"{name} must be a number from 0 to below {high}, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """One of a fixed set of strings."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def check_positive_int(name: str, value: int) -> None:
    """An integer >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")


def check_bool(name: str, value: bool) -> None:
    """`value` is true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


def check_bools(config: PassConfig) -> None:
    """Every field of `config` is true or false."""
    for field in dataclasses.fields(config):
        check_bool(field.name, getattr(config, field.name))


class PassRefused(BadInput, ir.passes.PreconditionError):
    """A pass cannot run on this model (its `requires()` says why, in one line, and what to do)."""


class OnnxforgePass(ir.passes.InPlacePass):
    """A recipe pass: `name`, `config_class` and `summary` declare it; built from its config."""

    name: ClassVar[str]
    config_class: ClassVar[type[PassConfig]]
    summary: ClassVar[str]

    def __init__(self, config: PassConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_class()

    def log(self, model: ir.Model) -> PassLog:
        """Start this pass's entry in the model's log (counts now, details when written)."""
        return PassLog(model, self.name, self.config)

    def refuse(self, reason: str) -> PassRefused:
        """The one-line refusal of this pass: its name, then `reason` ("must run before fuse: ...")."""
        return PassRefused(f"{self.name} {reason}")


def model_facts(model: ir.Model) -> dict[str, Any]:
    """The model's shape facts (layers, heads, head_dim, hidden size...), as the pipeline stored them."""
    text = model.metadata_props.get(FACTS_KEY)
    if text is None:
        raise PassRefused("the model carries no onnxforge architecture facts: compress a folder written by onnxforge")
    return json.loads(text)


def is_fused(model: ir.Model) -> bool:
    """Whether ONNX Runtime contrib kernels (the fuse pass's output) are in the graph."""
    return any(node.domain == MS_DOMAIN for node in model.graph)


def set_model_facts(model: ir.Model, facts: dict[str, Any]) -> None:
    """Store updated shape facts (after a pass removed heads or layers)."""
    model.metadata_props[FACTS_KEY] = json.dumps(facts)


def adopt_graph(model: ir.Model, rewritten: ir.Model) -> None:
    """Make `model` (the pipeline's object) hold the graph a library rewrote out of place, keeping its metadata."""
    metadata = dict(model.metadata_props)
    model.graph = rewritten.graph
    model.ir_version = rewritten.ir_version
    model.metadata_props.clear()
    model.metadata_props.update(metadata)


def parameter_count(model: ir.Model) -> int:
    """Elements in all initializers."""
    return sum(v.const_value.size for v in model.graph.initializers.values() if v.const_value is not None)


def nonzero_count(model: ir.Model) -> int:
    """Initializer elements that are not zero (what sparsity reduces while bytes stay the same)."""
    values = (v.const_value for v in model.graph.initializers.values())
    return sum(int(np.count_nonzero(t.numpy())) for t in values if t is not None)


def parameter_bytes(model: ir.Model) -> int:
    """Bytes of all initializers as stored (dense)."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


class PassLog:
    """Measure parameters and bytes around a pass and append its entry to the model's log."""

    def __init__(self, model: ir.Model, name: str, config: PassConfig) -> None:
        self.model, self.name, self.config = model, name, config
        self.parameters_before, self.bytes_before = parameter_count(model), parameter_bytes(model)
        self.nodes_before = model.graph.num_nodes()

    def write(self, **details: Any) -> dict[str, Any]:
        """Append {pass, config, before/after counts, details} to the log (when one is open); return it."""
        entry = {
            "pass": self.name,
            "config": self.config.to_json(),
            "parameters_before": self.parameters_before,
            "parameters_after": parameter_count(self.model),
            "bytes_before": self.bytes_before,
            "bytes_after": parameter_bytes(self.model),
            "nodes_before": self.nodes_before,
            "nodes_after": self.model.graph.num_nodes(),
            **details,
        }
        if PASS_LOG_KEY in self.model.metadata_props:
            log = json.loads(self.model.metadata_props[PASS_LOG_KEY])
            self.model.metadata_props[PASS_LOG_KEY] = json.dumps(log + [entry])
        return entry


def open_pass_log(model: ir.Model) -> None:
    """Start recording what passes do (the exporter's own cleanup runs without a log)."""
    model.metadata_props[PASS_LOG_KEY] = "[]"


def take_pass_log(model: ir.Model) -> list[dict[str, Any]]:
    """Remove the log from the model's metadata and return its entries."""
    return json.loads(model.metadata_props.pop(PASS_LOG_KEY, "[]"))
