"""Open an ONNX Runtime session on an exported folder: providers, threads, optimisation, a cache.

The optimised-model cache keeps ONNX Runtime's optimised graph (keyed by the model files, the
onnxruntime version, the providers and the level) so that a second load skips the optimisation.
Load failures become one `BadInput` line that says which file is wrong.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from onnxforge.errors import BadInput
from onnxforge.folder import EXTERNAL_DATA_FILE, MODEL_FILE
from onnxforge.runtime.providers import ProviderChoice, ProviderSettings, choose_providers, log, ort_provider_list

OPTIMIZATION_LEVELS = {
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_CACHED_MODEL, _CACHED_DATA = MODEL_FILE, EXTERNAL_DATA_FILE


@dataclass(frozen=True)
class SessionSettings:
    """How to open a folder: providers, graph optimisation level, where to cache the optimised graph, and which
    graph file (relative to the folder: a bundle keeps `onnx/model_q4.onnx` or `model.ort`)."""

    providers: ProviderSettings = field(default_factory=ProviderSettings)
    optimization: str = "all"
    optimized_cache: Path | None = None
    graph: str = MODEL_FILE

    def __post_init__(self) -> None:
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise BadInput(f"unknown optimisation level '{self.optimization}': "
                           f"choose from {', '.join(OPTIMIZATION_LEVELS)}")

    @classmethod
    def with_threads(cls, threads: int) -> SessionSettings:
        """CPU with `threads` threads, everything else default."""
        return cls(ProviderSettings(threads=threads))


def open_session(model_dir: str | Path, settings: SessionSettings = SessionSettings()) -> ort.InferenceSession:
    """A session on `model_dir/model.onnx` (or `settings.graph`); `settings.optimized_cache` speeds up later loads."""
    path = Path(model_dir) / settings.graph
    if not path.is_file():
        raise BadInput(f"'{model_dir}' has no {settings.graph}: give a folder written by onnxforge export")
    providers = settings.providers
    choice = choose_providers(providers)
    options = _session_options(providers.threads, settings.optimization)
    cache = settings.optimized_cache
    cached = _cache_entry(path, cache, choice.names, settings.optimization) if cache else None
    if cached and (cached / _CACHED_MODEL).is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return _create(cached / _CACHED_MODEL, options, choice, providers.strict)
    if cached is None:
        return _create(path, options, choice, providers.strict)
    return _create_and_cache(path, options, choice, providers.strict, cached)


def _session_options(threads: int, optimization: str) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get("ONNXFORGE_THREADS", "0"))
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    options.log_severity_level = 4  # errors come back as exceptions; we print them as one line
    return options


def _create_and_cache(
    path: Path, options: ort.SessionOptions, choice: ProviderChoice, strict: bool, entry: Path
) -> ort.InferenceSession:
    staging = entry.with_name(f"{entry.name}.partial-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    options.optimized_model_filepath = str(staging / _CACHED_MODEL)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", _CACHED_DATA)
    try:
        session = _create(path, options, choice, strict)
        if not entry.exists():
            staging.rename(entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return session


def _cache_entry(path: Path, cache: Path, providers: tuple[str, ...], optimization: str) -> Path:
    """A folder name that changes whenever the model files, onnxruntime or the settings change."""
    key = hashlib.sha256(ort.__version__.encode())
    for file in sorted(path.parent.glob(f"{path.stem}.*")):
        stat = file.stat()
        key.update(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(f"{providers}:{optimization}".encode())
    return cache / key.hexdigest()[:24]


def _create(path: Path, options: ort.SessionOptions, choice: ProviderChoice, strict: bool) -> ort.InferenceSession:
    try:
        session = ort.InferenceSession(str(path), options, providers=ort_provider_list(choice))
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped failures
        raise BadInput(_load_failure(path, error)) from error
    used = session.get_providers()
    if used[0] != ort_provider_list(choice)[0][0]:
        reason = f"{choice.names[0]} failed to start (onnxruntime fell back to {used[0]})"
        if strict:
            raise BadInput(f"{reason}: check the GPU drivers, or drop --strict-provider")
        log.warning("%s", reason)
    return session


def _load_failure(path: Path, error: Exception) -> str:
    message = str(error)
    if "escapes model directory" in message:
        return f"{path} points to external data outside its folder: refusing to load it (re-export the model)"
    if "does not exist" in message:
        return f"{path} needs an external data file that is missing: copy the whole folder, with model.onnx_data"
    if "out of bounds" in message or "can not be read in full" in message:
        return f"the external data of {path} is truncated: copy model.onnx_data again or re-export"
    if "Protobuf parsing failed" in message or "INVALID_PROTOBUF" in message:
        return f"{path} is corrupt or truncated (not a readable ONNX file): re-export or copy it again"
    return f"onnxruntime cannot load {path}: {message.splitlines()[0][:300]}"


def session_device(session: ort.InferenceSession) -> str:
    """'cuda' when the session's first provider runs on a GPU, else 'cpu'."""
    return "cuda" if session.get_providers()[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider") else "cpu"
