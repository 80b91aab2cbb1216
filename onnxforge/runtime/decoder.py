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
        if self._last_token is not None:
            self._binding.bind_ortvalue_input(LOGITS_TO_KEEP, self._last_token)
        self._bound_cache: KVCache | None = None
        kept_rows = self._last_token is not None and self.device == "cpu"
        self._logits_out = _LogitsBuffers.for_session(self.session) if kept_rows else None
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
        last_only: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One plain call with numpy arrays; returns float32 logits [batch, seq, vocab] and the present cache.
        `last_only`: a graph with `logits_to_keep` computes each row's last position only ([batch, 1, vocab]);
        other graphs still return every position."""
        feeds = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask, POSITION_IDS: position_ids}
        if last_only and self._last_token is not None:
            feeds[LOGITS_TO_KEEP] = np.array(1, np.int64)
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
        `logits_to_keep` computes only those: each row's last token, as its attention_mask says.

        The step binds only what changes: a shared-buffer cache is bound once (the kernel writes in place), and
        a graph with `logits_to_keep` writes its logits into a buffer kept per batch size."""
        binding = self._binding
        binding.bind_cpu_input(INPUT_IDS, input_ids)
        binding.bind_cpu_input(ATTENTION_MASK, attention_mask)
        binding.bind_cpu_input(POSITION_IDS, position_ids)
        logits = self._bind_logits(len(input_ids))
        self._bind_cache(cache)
        start = time.perf_counter()
        self.session.run_with_iobinding(binding)
        self.run_seconds += time.perf_counter() - start
        if logits is None or not cache.layout.shared_buffer:
            values, *present = binding.get_outputs()
            cache.update(present)
            logits = values.numpy() if logits is None else logits
        if self._last_token is not None or last is None:
            picked = logits[:, -1]
        else:
            picked = logits[np.arange(len(logits)), last]
        return picked.astype(np.float32)  # a copy: the kept buffer is the next step's output

    def _bind_logits(self, batch: int) -> np.ndarray | None:
        """Bind the logits output: the kept buffer for `batch` rows when the graph keeps one position per row
        (returned, the kernel writes into it), else a fresh output (None: read it after the call)."""
        if self._logits_out is None:
            self._binding.bind_output(LOGITS, "cpu")
            return None
        array, value = self._logits_out.rows(batch)
        self._binding.bind_ortvalue_output(LOGITS, value)
        return array

    def _bind_cache(self, cache: KVCache) -> None:
        """Bind past and present: every step for a growing cache, once per cache for a shared buffer."""
        if cache.layout.shared_buffer and cache is self._bound_cache:
            return
        cache.bind(self._binding)
        self._bound_cache = cache


class _LogitsBuffers:
    """Host buffers [batch, 1, vocab] the graph writes each row's last logits into, one per batch size."""

    def __init__(self, vocab: int, dtype: type) -> None:
        self.vocab, self.dtype = vocab, dtype
        self._by_rows: dict[int, tuple[np.ndarray, ort.OrtValue]] = {}

    @classmethod
    def for_session(cls, session: ort.InferenceSession) -> _LogitsBuffers | None:
        """Buffers for the session's logits output; None when its vocabulary size is not a fixed number."""
        output = next(o for o in session.get_outputs() if o.name == LOGITS)
        vocab = output.shape[-1]
        return cls(vocab, _ORT_FLOAT_TYPES[output.type]) if isinstance(vocab, int) else None

    def rows(self, batch: int) -> tuple[np.ndarray, ort.OrtValue]:
        """The buffer for `batch` rows and the OrtValue over its memory."""
        if batch not in self._by_rows:
            array = np.zeros((batch, 1, self.vocab), self.dtype)
            self._by_rows[batch] = array, ort.OrtValue.ortvalue_from_numpy(array)
        return self._by_rows[batch]


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
