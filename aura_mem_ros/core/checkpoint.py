"""AURA weights on disk: ``aura.safetensors`` + ``aura_config.json`` (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.config import AuraConfig

WEIGHTS_FILE = "aura.safetensors"
CONFIG_FILE = "aura_config.json"


def init_aura(config: AuraConfig, seed: int = 0) -> AuraLayer:
    """An untrained layer: its residual head is zero, so it reproduces the base policy."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return AuraLayer(config)
    finally:
        torch.random.set_rng_state(generator_state)


def save_aura(layer: AuraLayer, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in layer.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(layer.config.to_dict(), indent=2) + "\n")
    return directory


def load_aura(directory: str | Path) -> AuraLayer:
    """Rebuild the layer from its config and load the weights strictly (ValueError if off)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}")
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{config_path} must hold a JSON object")
    layer = AuraLayer(AuraConfig.from_dict(data))
    try:
        layer.load_state_dict(load_file(str(weights_path)), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights_path} does not match {config_path}: {err}") from err
    return layer.eval()
