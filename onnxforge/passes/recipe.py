"""Recipes: TOML files listing passes in order, named ones shipped in `onnxforge/recipes/`.

```toml
description = "what the recipe is for"

[calibration]            # optional: for activation-aware passes
samples = 32

[[passes]]
name = "prune-ffn"
ratio = 0.25
```
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from onnxforge.errors import BadInput
from onnxforge.passes.base import PassConfig
from onnxforge.passes.calibration import CALIBRATION_FIELDS
from onnxforge.passes.registry import build_config


@dataclass(frozen=True)
class RecipeStep:
    """One pass of a recipe: its registered name and validated config."""

    name: str
    config: PassConfig


@dataclass(frozen=True)
class Recipe:
    """An ordered list of passes, with where it came from."""

    source: str
    description: str
    steps: tuple[RecipeStep, ...]
    calibration: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The recipe as it will be recorded in onnxforge.json."""
        return {"source": self.source, "passes": [{"name": s.name, **s.config.to_json()} for s in self.steps]}


def named_recipes() -> dict[str, str]:
    """The recipes shipped with onnxforge: name -> TOML text."""
    folder = resources.files("onnxforge") / "recipes"
    return {
        p.name.removesuffix(".toml"): p.read_text(encoding="utf-8")
        for p in folder.iterdir()
        if p.name.endswith(".toml")
    }


def load_recipe(name_or_path: str) -> Recipe:
    """A named recipe or a TOML file, validated; BadInput says what is wrong and what is valid."""
    shipped = named_recipes()
    if name_or_path in shipped:
        return parse_recipe(shipped[name_or_path], name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise BadInput(
            f"--recipe {name_or_path!r} is neither a shipped recipe nor a file: choose one of "
            f"{', '.join(sorted(shipped))} or give a path to a .toml file"
        )
    return parse_recipe(path.read_text(encoding="utf-8"), str(path))


def parse_recipe(text: str, source: str) -> Recipe:
    """Parse and validate recipe TOML text (source names it in error messages)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise BadInput(f"recipe {source} is not valid TOML: {error}") from None
    unknown = sorted(set(table) - {"description", "passes", "calibration"})
    if unknown:
        raise BadInput(
            f"recipe {source}: unknown key {', '.join(unknown)}; a recipe has description, [calibration] and [[passes]]"
        )
    calibration = table.get("calibration", {})
    wrong = sorted(set(calibration) - set(CALIBRATION_FIELDS)) if isinstance(calibration, dict) else ["(not a table)"]
    if wrong:
        raise BadInput(
            f"recipe {source}: [calibration] has unknown {', '.join(wrong)}; valid: {', '.join(CALIBRATION_FIELDS)}"
        )
    passes = table.get("passes")
    if not isinstance(passes, list) or not passes:
        raise BadInput(f'recipe {source} lists no passes: add [[passes]] tables with name = "..."')
    steps = [RecipeStep(*build_config(fields, f"recipe {source}, pass {number}"))
             for number, fields in enumerate(passes, start=1)]
    return Recipe(source, str(table.get("description", "")), tuple(steps), dict(calibration))
