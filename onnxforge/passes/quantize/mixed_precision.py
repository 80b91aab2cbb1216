"""Sensitivity analysis and per-layer precision (int4 / int8 / float) to a quality budget.

1. Every unit (a decoder layer's weights, and lm_head with the tied embedding) is quantised to
   int4 alone, everything else float, and the calibration text's mean negative log-likelihood is
   measured: the unit's damage. The same for int8 once for all units together (int8 costs about
   nothing; its damage is shared out by parameter count).
2. Start from all int4 and move units to int8, then to float, in the order of damage removed per
   byte added, until the predicted perplexity increase (damages add up in log-likelihood) is
   within `max_ppl_increase`.
3. Check the plan by measuring it, and keep upgrading while the measured increase is over budget.
The pass log lists each unit's damage, its precision and why, and the predicted and measured
increase. Quantised weights go through the same writer as quantize-weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import onnx_ir as ir

from onnxforge.passes.base import PassConfig, PassRefused, check_fraction, model_facts
from onnxforge.passes.calibration import CalibratedPass
from onnxforge.passes.quantize.blockwise import BlockQuantized
from onnxforge.passes.quantize.weight_matmuls import WeightMatMul, select, weight_matmuls
from onnxforge.passes.quantize.weights import QuantizeWeightsConfig, quantize_weight, write_quantized

PRECISIONS = ("int4", "int8", "float")
_MAX_CHECKS = 8


@dataclasses.dataclass(frozen=True)
class MixedPrecisionConfig(PassConfig):
    """The budget (relative perplexity increase on the calibration text) and how int4 is made."""

    max_ppl_increase: float = 0.03
    method: str = "rtn"
    block_size: int = 32
    symmetric: bool = False
    accuracy_level: int = 4
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def validate(self) -> None:
        check_fraction("max_ppl_increase", self.max_ppl_increase, high=10.0)
        self.weight_config(4)  # validates method, block size, accuracy level

    def weight_config(self, bits: int) -> QuantizeWeightsConfig:
        """The quantize-weights settings for one precision (int8 is always round-to-nearest)."""
        method = self.method if bits == 4 else "rtn"
        return QuantizeWeightsConfig(
            bits=bits,
            block_size=self.block_size,
            symmetric=self.symmetric,
            method=method,
            accuracy_level=self.accuracy_level,
        )


@dataclasses.dataclass
class Unit:
    """Weights that get one precision together, with their quantised forms and measured damage."""

    name: str
    weights: list[WeightMatMul]
    forms: dict[str, list[BlockQuantized]] = dataclasses.field(default_factory=dict)
    damage: dict[str, float] = dataclasses.field(default_factory=dict)
    precision: str = "int4"

    @property
    def parameters(self) -> int:
        return sum(int(np.prod(w.weight.const_value.shape)) for w in self.weights)

    def stored_bytes(self, precision: str) -> float:
        """Bytes of this unit's weights at `precision` (codes, scales and zero points as quantised)."""
        if precision == "float":
            return 4.0 * self.parameters
        return sum(
            q.codes.size * q.bits / 8 + q.scales.nbytes + q.zeros.size * q.bits / 8 for q in self.forms[precision]
        )

    def extra_bytes(self, precision: str) -> float:
        """Bytes this unit adds when moved from its current precision to `precision`."""
        return self.stored_bytes(precision) - self.stored_bytes(self.precision)


class MixedPrecisionPass(CalibratedPass):
    """Pick int4 / int8 / float per unit so the calibration perplexity rises at most by the budget."""

    name = "mixed-precision"
    config_class = MixedPrecisionConfig
    summary = "measure each layer's int4 damage, pick int4/int8/float per layer to fit a perplexity budget"

    def requires(self, model: ir.Model) -> None:
        if model_facts(model).get("task") == "feature-extraction":
            raise self.refuse("budgets perplexity, which an encoder does not have: use quantize-weights (int4 or "
                              "int8) on an encoder")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        config: MixedPrecisionConfig = self.config
        log = self.log(model)
        units = _units(select(weight_matmuls(model.graph), config.include, config.exclude))
        if not units:
            raise PassRefused("no weight MatMul matches include/exclude: nothing to quantise")
        weights = [w for unit in units for w in unit.weights]
        grams = (
            self.input_statistics(model, weights, "input_covariances", "Gram matrices")
            if config.method == "gptq"
            else []
        )
        gram_of = dict(zip((w.name for w in weights), grams))
        for unit in units:
            for bits, precision in ((4, "int4"), (8, "int8")):
                settings = config.weight_config(bits)
                unit.forms[precision] = [quantize_weight(w, settings, gram_of.get(w.name)) for w in unit.weights]
        base = self.calibrated().mean_nll(model, "float model")
        self._measure_damage(model, units, base)
        predicted = _plan(units, config.max_ppl_increase)
        measured = self._check(model, units, base, config.max_ppl_increase)
        plan = [(w, q) for u in units if u.precision != "float" for w, q in zip(u.weights, u.forms[u.precision])]
        embedding = write_quantized(
            model, plan, "matmulnbits", config.accuracy_level, any(w.transposed for w, _ in plan)
        )
        log.write(
            units=[_report(u) for u in units],
            predicted_ppl_increase=round(predicted, 5),
            measured_ppl_increase=round(measured, 5),
            calibration_nll_float=round(base, 5),
            embedding=embedding,
        )
        return ir.passes.PassResult(model, modified=bool(plan))

    def _measure_damage(self, model: ir.Model, units: list[Unit], base: float) -> None:
        for number, unit in enumerate(units, start=1):
            with _simulated(model, [(unit, "int4")]):
                unit.damage["int4"] = self.calibrated().mean_nll(model, f"int4 damage {number}/{len(units)}") - base
        with _simulated(model, [(unit, "int8") for unit in units]):
            all_int8 = self.calibrated().mean_nll(model, "int8 damage, all units") - base
        total = sum(unit.parameters for unit in units)
        for unit in units:
            unit.damage["int8"] = all_int8 * unit.parameters / total
            unit.damage["float"] = 0.0

    def _check(self, model: ir.Model, units: list[Unit], base: float, budget: float) -> float:
        """Measure the plan; upgrade the next unit while the measured increase is over budget."""
        for _ in range(_MAX_CHECKS):
            chosen = [(unit, unit.precision) for unit in units if unit.precision != "float"]
            with _simulated(model, chosen):
                increase = math.expm1(self.calibrated().mean_nll(model, "checking the plan") - base)
            if increase <= budget or not _upgrade_one(units):
                return increase
        return increase


def _units(weights: list[WeightMatMul]) -> list[Unit]:
    """One unit per decoder layer, plus one per weight outside the layers (lm_head)."""
    units: dict[str, Unit] = {}
    for weight in weights:
        name = f"layer {weight.layer}" if weight.layer is not None else weight.name
        units.setdefault(name, Unit(name, [])).weights.append(weight)
    return list(units.values())


def _plan(units: list[Unit], budget: float) -> float:
    """Upgrade units by damage removed per byte until the predicted increase fits; return it."""
    while True:
        predicted = math.expm1(sum(unit.damage[unit.precision] for unit in units))
        if predicted <= budget or not _upgrade_one(units):
            return predicted


def _upgrade_one(units: list[Unit]) -> bool:
    """Move the unit with the best damage-per-byte gain one precision up; False when all are float."""
    options = []
    for unit in units:
        if unit.precision == "float":
            continue
        higher = PRECISIONS[PRECISIONS.index(unit.precision) + 1]
        gain = unit.damage[unit.precision] - unit.damage[higher]
        options.append((gain / unit.extra_bytes(higher), unit, higher))
    if not options:
        return False
    _, unit, higher = max(options, key=lambda option: option[0])
    unit.precision = higher
    return True


@contextmanager
def _simulated(model: ir.Model, choices: list[tuple[Unit, str]]) -> Iterator[None]:
    """Temporarily put the dequantised weights of each (unit, precision) in place of the floats."""
    saved = []
    for unit, precision in choices:
        for weight, quantized in zip(unit.weights, unit.forms[precision]):
            values = quantized.dequantize()
            saved.append((weight.weight, weight.weight.const_value))
            stored = values.T if weight.transposed else values
            weight.weight.const_value = ir.Tensor(np.ascontiguousarray(stored), name=weight.weight.name)
    try:
        yield
    finally:
        for value, tensor in reversed(saved):
            value.const_value = tensor


def _report(unit: Unit) -> dict:
    """One unit's line in the log: damage at int4 as a perplexity increase, precision and why."""
    int4 = math.expm1(unit.damage["int4"])
    if unit.precision == "int4":
        why = f"int4 alone adds {int4:+.2%} calibration perplexity: kept at int4"
    else:
        why = f"int4 alone would add {int4:+.2%}: among the most damage per byte saved, moved to {unit.precision}"
    return {"unit": unit.name, "int4_ppl_increase": round(int4, 5), "precision": unit.precision, "why": why}
