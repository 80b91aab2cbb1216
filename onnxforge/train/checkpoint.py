"""Training checkpoints: the student's parameters (safetensors), the optimiser (torch, weights only), the state (JSON).

Written to a temporary folder renamed over the previous checkpoint, so an interrupted save leaves
the last one whole. Loading checks every part and turns anything unreadable into one BadInput line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from onnxforge.errors import BadInput

_WEIGHTS, _OPTIMIZER, _STATE = "student.safetensors", "optimizer.pt", "state.json"


def checkpoint_folder(out: Path) -> Path:
    """Where the checkpoints of a distillation into OUT live: `OUT.checkpoint` beside it."""
    return out.parent / f"{out.name}.checkpoint"


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: dict[str, Any], state: dict[str, Any]) -> None:
    """Replace the checkpoint in `folder` by the model's parameters, the optimiser's state and `state`."""
    fresh = folder.parent / f".{folder.name}.new-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    save_file({name: p.detach().contiguous() for name, p in model.named_parameters()}, fresh / _WEIGHTS)
    torch.save(optimizer, fresh / _OPTIMIZER)
    (fresh / _STATE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(parameters, optimiser state, state) of the checkpoint in `folder`; BadInput when missing or corrupt."""
    if not (folder / _STATE).is_file():
        raise BadInput(f"--resume found no checkpoint in '{folder}': run without --resume to start afresh")
    try:
        state = json.loads((folder / _STATE).read_text(encoding="utf-8"))
        tensors = load_file(folder / _WEIGHTS)
        optimizer = torch.load(folder / _OPTIMIZER, weights_only=True)
    except Exception as error:  # noqa: BLE001 - safetensors, torch and json each raise their own errors
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise BadInput(f"the checkpoint in '{folder}' is corrupt ({reason}): "
                       "delete it and run without --resume") from None
    if not isinstance(state, dict) or "history" not in state:
        raise BadInput(f"the checkpoint in '{folder}' is corrupt (state.json has no history): delete it")
    return tensors, optimizer, state


def load_checkpoint(folder: Path, model: torch.nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the parameters into `model`; return (optimiser state, state). BadInput when missing, corrupt or foreign."""
    tensors, optimizer, state = read_checkpoint(folder)
    parameters = dict(model.named_parameters())
    if set(tensors) != set(parameters) or any(tensors[n].shape != parameters[n].shape for n in tensors):
        raise BadInput(f"the checkpoint in '{folder}' belongs to another student: delete it or distil that student")
    with torch.no_grad():
        for name, tensor in tensors.items():
            parameters[name].copy_(tensor)
    return optimizer, state
