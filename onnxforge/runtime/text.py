"""Tokenizer and chat template of an exported folder, with `tokenizers` and sandboxed jinja2."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from onnxforge.errors import BadInput
from onnxforge.folder import read_tokenizer


class TextCodec:
    """Encode prompts (optionally through the chat template) and decode generated ids."""

    def __init__(self, model_dir: str | Path) -> None:
        folder = Path(model_dir)
        self.tokenizer = read_tokenizer(folder)
        self.config = _read_json(folder / "tokenizer_config.json")
        self.generation_config = _read_json(folder / "generation_config.json")
        self.chat_template = self.config.get("chat_template") or _read_text(folder / "chat_template.jinja")

    def special_token(self, name: str) -> str | None:
        """The text of a special token (`eos_token`, `bos_token`, ...) from tokenizer_config.json."""
        value = self.config.get(name)
        return value.get("content") if isinstance(value, dict) else value

    def stop_ids(self) -> list[int]:
        """End-of-sequence ids from generation_config.json (int or list), else the eos token's id."""
        eos = self.generation_config.get("eos_token_id")
        if eos is None:
            token = self.special_token("eos_token")
            eos = self.tokenizer.token_to_id(token) if token else None
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as is (special tokens written in the text are recognised)."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"the text {text[:40]!r} is not valid UTF-8: give the prompt as UTF-8 text") from None
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, special tokens left out."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat template applied to `messages`, ending with the assistant's turn opened."""
        if not self.chat_template:
            raise BadInput("this model has no chat template: pass the prompt raw (--raw)")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.globals.update(raise_exception=_raise_template_error, strftime_now=_strftime_now)
        specials = {name: self.special_token(name) for name in ("bos_token", "eos_token")}
        try:
            return env.from_string(self.chat_template).render(messages=messages, add_generation_prompt=True, **specials)
        except SecurityError as error:
            raise BadInput(f"the chat template of this model tried something the sandbox forbids ({error}): "
                           "fix chat_template in tokenizer_config.json, or pass the prompt raw (--raw)") from error


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInput(f"{path} is not valid JSON ({error}): copy the folder again or re-export") from None


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None
