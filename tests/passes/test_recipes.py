"""Recipes and the registry: every shipped recipe parses; mistakes are rejected with the valid choices."""

from __future__ import annotations

import pytest

from onnxforge.cli import main
from onnxforge.errors import BadInput
from onnxforge.passes.recipe import load_recipe, named_recipes, parse_recipe
from onnxforge.passes.registry import registry


def test_every_shipped_recipe_is_valid() -> None:
    names = named_recipes()
    for required in ("fuse", "prune-ffn-25", "prune-heads-25", "drop-layers-2", "sparse-2of4", "lowrank-50"):
        assert required in names
    for name in names:
        assert load_recipe(name).steps


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[passes]]\nname = "prune-fnn"', "unknown pass 'prune-fnn': valid passes are .*prune-ffn"),
        ("[[passes]]\nratio = 0.2", "has no name: valid passes are"),
        ('[[passes]]\nname = "prune-ffn"\nratoi = 0.2', "unknown field ratoi; valid fields are ratio, scoring"),
        ('[[passes]]\nname = "prune-ffn"\nratio = 1.5', "ratio must be a number from 0 to below 0.95, got 1.5"),
        ('[[passes]]\nname = "prune-ffn"\nscoring = "wanda"', "scoring must be one of magnitude, activation"),
        ('description = "x"', "lists no passes"),
        ('[[passes]\nname = "x"', "is not valid TOML"),
        ("passes = []\nthing = 1", "unknown key thing"),
        ('[calibration]\nsample = 3\n[[passes]]\nname = "cleanup"', r"\[calibration\] has unknown sample"),
    ],
)
def test_bad_recipes_are_rejected_with_the_valid_choices(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_recipe(text, "r.toml")


def test_registry_configs_validate_their_defaults() -> None:
    for entry in registry().values():
        entry.config_class()  # the defaults themselves are valid


def test_unknown_recipe_name_lists_the_shipped_ones(capsys: pytest.CaptureFixture, tmp_path) -> None:  # noqa: ANN001
    status = main(["compress", str(tmp_path), str(tmp_path / "out"), "--recipe", "prune-everything"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "neither a shipped recipe nor a file" in error and "prune-ffn-25" in error
    assert not (tmp_path / "out").exists()
