"""The runtime generates, and the server serves, with torch, transformers and onnx made unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import tomllib

HEAVY = ("torch", "transformers", "onnx", "onnx_ir", "onnxscript", "gguf", "accelerate", "safetensors")

SCRIPT = """
import importlib.abc, json, sys
HEAVY = set(sys.argv[2].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is not installed in a deployment")

sys.meta_path.insert(0, Refuse())
from onnxforge.runtime.generate import GenerationSettings, Generator
run = Generator(sys.argv[1]).generate(["Hello", "Hi there"], GenerationSettings(max_new_tokens=8))
print(json.dumps({"tokens": [c.token_ids for c in run.completions], "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
"""
SERVE_SCRIPT = SCRIPT.split("from onnxforge.runtime.generate")[0] + """
from pathlib import Path
from onnxforge.serve.app import ServedModel, ServerConfig, create_app
from onnxforge.serve.requests import RequestSettings
create_app(ServerConfig(Path(sys.argv[1])))
served = ServedModel(ServerConfig(Path(sys.argv[1])))
served.load()
tokens = []
served.engine.submit([5, 6, 7], RequestSettings(8, ignore_eos=True), lambda event: tokens.append(event.token_id))
while served.engine.step():
    pass
served.stop()
print(json.dumps({"tokens": [[t for t in tokens if t is not None]], "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def test_generation_runs_without_torch_transformers_or_onnx(export_tiny: Callable[[str], Path]) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(export_tiny("llama")), ",".join(HEAVY)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == [] and all(0 < len(tokens) <= 8 for tokens in report["tokens"])


def test_the_server_runs_without_them(export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    from tests.passes.helpers import run_recipe

    folder = tmp_path / "fused"
    run_recipe(export_tiny("llama"), folder, '[[passes]]\nname = "fuse"')
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(folder), ",".join(HEAVY)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == [] and [len(tokens) for tokens in report["tokens"]] == [8]


def test_the_plain_install_does_not_require_them() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    required = {dep.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert required.isdisjoint({name.replace("_", "-") for name in HEAVY} | {"onnx-ir"})
