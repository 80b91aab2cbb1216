"""Passes declare themselves: the registry is built from the classes, names agree, `modified` is honest."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import onnx_ir as ir
import pytest

from onnxforge.passes.base import PassConfig, PassRefused, set_model_facts
from onnxforge.passes.calibration import CalibratedPass
from onnxforge.passes.prune.ffn import PruneFfnConfig, PruneFfnPass
from onnxforge.passes.registry import PASS_CLASSES, needs_calibration, registry


def _loaded(folder: Path) -> ir.Model:
    model = ir.external_data.load_to_model(ir.load(folder / "model.onnx"))
    set_model_facts(model, json.loads((folder / "onnxforge.json").read_text())["architecture"])
    return model


@pytest.mark.parametrize("cls", PASS_CLASSES, ids=lambda cls: cls.name)
def test_class_config_and_recipe_name_agree(cls: type) -> None:
    stem = cls.name.replace("-", "")
    assert cls.__name__.lower() == f"{stem}pass" and cls.config_class.__name__.lower() == f"{stem}config"
    assert dataclasses.is_dataclass(cls.config_class) and issubclass(cls.config_class, PassConfig)
    assert cls.summary and "\n" not in cls.summary
    assert needs_calibration(cls.name) == issubclass(cls, CalibratedPass)


def test_every_name_is_registered_once() -> None:
    assert len(registry()) == len(PASS_CLASSES) and all(registry()[cls.name] is cls for cls in PASS_CLASSES)


def test_a_pass_that_removes_nothing_says_it_changed_nothing(export_tiny: Callable[[str], Path]) -> None:
    model = _loaded(export_tiny("llama"))
    assert PruneFfnPass(PruneFfnConfig(ratio=0.0, scoring="magnitude", compensate=False))(model).modified is False
    assert PruneFfnPass(PruneFfnConfig(ratio=0.5, scoring="magnitude", compensate=False))(model).modified is True


def test_preconditions_refuse_in_requires(export_tiny: Callable[[str], Path]) -> None:
    model = _loaded(export_tiny("gpt2"))
    with pytest.raises(PassRefused, match="prune-ffn supports llama, mistral, qwen2"):
        PruneFfnPass(PruneFfnConfig(scoring="magnitude")).requires(model)
