"""One ONNX Runtime session over an exported decoder, with the optimum input/output naming."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxforge.errors import BadInput
from onnxforge.folder import (
    ATTENTION_MASK,
    BATCH_ROWS_KEY,
    CONFIG_FILE,
    INDEPENDENT_ROWS,
    INPUT_IDS,
    KV_CACHE_KEY,
    LOGITS,
    LOGITS_TO_KEEP,
    PAST_PREFIX,
    POSITION_IDS,
    SHARED_BUFFER,
)
from onnxforge.runtime.kv_cache import CacheLayout, KVCache
from onnxforge.runtime.session import SessionSettings, open_session, session_device

_ORT_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length")


class Decoder:
    """A decoder-with-past graph: feed ids, mask, positions and past; get logits and present."""

    def __init__(self, model_dir: str | Path, settings: SessionSettings = SessionSettings()) -> None:
        self.session = open_session(model_dir, settings)
        self.layout = _cache_layout(self.session)
        self.context_length = context_length(Path(model_dir))
        self.rope_switch = rope_switch_length(Path(model_dir))
        self.device = session_device(self.session)
        self.device_id = settings.providers.device_id
        self.provider = self.session.get_providers()[0]
        self.output_names = [output.name for output in self.session.get_outputs()]
        # logits_to_keep = 1: each row's last token only (an OrtValue: bind_cpu_input knows required inputs only)
        overridable = {i.name for i in self.session.get_overridable_initializers()}
        self._last_token = (ort.OrtValue.ortvalue_from_numpy(np.array(1, np.int64))
                            if LOGITS_TO_KEEP in overridable else None)
        self._binding = self.session.io_binding()
        self.run_seconds = 0.0

    @property
    def last_token_only(self) -> bool:
        """Whether `step` has the graph compute the logits of each row's last token only (`logits_to_keep`)."""
        return self._last_token is not None

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Past keys/values of length 0, in input order (key then value for each layer)."""
        lay = self.layout
        shape = (batch, lay.num_kv_heads, 0, lay.head_dim)
        return [np.zeros(shape, lay.dtype) for _ in range(2 * lay.num_layers)]

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        past: list[np.ndarray],
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One plain call with numpy arrays; returns float32 logits [batch, seq, vocab] and the present cache."""
        feeds = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask, POSITION_IDS: position_ids}
        feeds.update(zip(self.layout.past_names(), past))
        logits, *present = self.session.run(self.output_names, feeds)
        return logits.astype(np.float32, copy=False), present

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """An empty KV cache for `batch` rows of at most `capacity` positions, on the session's device."""
        return KVCache.empty(self.layout, batch, capacity, self.device, self.device_id)

    def step(
        self, cache: KVCache, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
        last: np.ndarray | None = None,
    ) -> np.ndarray:
        """One call through IO binding that updates `cache`; returns float32 logits [batch, vocab] of the last
        position, or of position `last[row]` in each row (right-padded rows starting at slot 0). A graph with
        `logits_to_keep` computes only those: each row's last token, as its attention_mask says."""
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        binding.bind_cpu_input(INPUT_IDS, input_ids)
        binding.bind_cpu_input(ATTENTION_MASK, attention_mask)
        binding.bind_cpu_input(POSITION_IDS, position_ids)
        if self._last_token is not None:
            binding.bind_ortvalue_input(LOGITS_TO_KEEP, self._last_token)
        binding.bind_output(LOGITS, "cpu")
        cache.bind(binding)
        start = time.perf_counter()
        self.session.run_with_iobinding(binding)
        self.run_seconds += time.perf_counter() - start
        logits, *present = binding.get_outputs()
        cache.update(present)
        values = logits.numpy()
        if self._last_token is not None or last is None:
            picked = values[:, -1]
        else:
            picked = values[np.arange(len(values)), last]
        return picked.astype(np.float32, copy=False)


def _cache_layout(session: ort.InferenceSession) -> CacheLayout:
    past = [i for i in session.get_inputs() if i.name.startswith(PAST_PREFIX)]
    if not past:
        raise BadInput("model.onnx has no past_key_values inputs: export it with onnxforge export")
    first = past[0]
    metadata = session.get_modelmeta().custom_metadata_map
    return CacheLayout(
        num_layers=len(past) // 2,
        num_kv_heads=int(first.shape[1]),
        head_dim=int(first.shape[3]),
        dtype=_ORT_FLOAT_TYPES[first.type],
        shared_buffer=metadata.get(KV_CACHE_KEY) == SHARED_BUFFER,
        independent_rows=metadata.get(BATCH_ROWS_KEY) == INDEPENDENT_ROWS,
    )


def rope_switch_length(folder: Path) -> int | None:
    """The original length past which a LongRoPE model switches to its long frequencies (None: no switch)."""
    config = _config(folder)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type")) != "longrope":
        return None
    return rope.get("original_max_position_embeddings") or config.get("original_max_position_embeddings")


def _config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def context_length(folder: Path) -> int | None:
    """The longest sequence the model was trained for, from config.json (None when unknown)."""
    config = _config(folder)
    return next((int(config[key]) for key in _CONTEXT_KEYS if key in config), None)
