"""The residual stream between decoder layers: read it from the teacher, feed it to (and read it from) the student.

Hooks on the decoder layers' forward calls, so that the models' own embedding, rotary, masking
and norms run unchanged. Student layer i stands for teacher layer `teacher_layers[i]` and the
dropped layers after it, so its target is the stream entering the next kept teacher layer (or
leaving the teacher's last layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of decoder layers (its longest ModuleList)."""
    lists = [module for module in model.modules() if isinstance(module, torch.nn.ModuleList)]
    return max(lists, key=len)


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def recorded_streams(model: torch.nn.Module) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Yield (entering, leaving): filled with each layer's input and output hidden state by the next forward."""
    entering: list[torch.Tensor] = []
    leaving: list[torch.Tensor] = []
    handles = []
    for layer in decoder_layers(model):
        handles.append(layer.register_forward_pre_hook(
            lambda _m, args, kwargs: entering.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True))
        handles.append(layer.register_forward_hook(lambda _m, _a, output: leaving.append(_hidden(output))))
    try:
        yield entering, leaving
    finally:
        for handle in handles:
            handle.remove()


def targets(entering: list[torch.Tensor], leaving: list[torch.Tensor], teacher_layers: list[int]) -> list[torch.Tensor]:
    """What each student layer should output: the teacher stream entering the next kept layer."""
    after = [*teacher_layers[1:], None]
    return [leaving[-1] if nxt is None else entering[nxt] for nxt in after]


@contextmanager
def fed_streams(model: torch.nn.Module, inputs: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Replace each layer's input by `inputs[i]` (detached: layers train independently); yield their outputs."""
    outputs: list[torch.Tensor] = []
    handles = []

    def feed(index: int) -> Any:
        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if args:
                return (inputs[index].detach(), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": inputs[index].detach()}
        return hook

    for index, layer in enumerate(decoder_layers(model)):
        handles.append(layer.register_forward_pre_hook(feed(index), with_kwargs=True))
        handles.append(layer.register_forward_hook(lambda _m, _a, output: outputs.append(_hidden(output))))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
