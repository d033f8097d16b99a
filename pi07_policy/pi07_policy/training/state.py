"""Training state (optimizer, step, RNG, loss history) as safetensors + json: resumable, never pickled."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

OPTIMIZER_FILE = 'optimizer.safetensors'
TRAINER_STATE_FILE = 'trainer_state.json'


def optimizer_state_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and the json-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, entry in sd['state'].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f'state.{pid}.{key}'] = value.detach().to('cpu').contiguous()
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {'param_groups': sd['param_groups'], 'plain_state': plain}


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith('state.'):
            continue
        _, pid, key = name.split('.', 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get('plain_state', {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = [dict(g, betas=tuple(g['betas'])) if 'betas' in g else g for g in meta['param_groups']]
    return {'state': state, 'param_groups': groups}


def training_state_files(optimizer: torch.optim.Optimizer, step: int, history: list[dict[str, float]],
                         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The files the loop adds to a checkpoint directory so that training can resume there."""
    tensors, opt_meta = optimizer_state_to_files(optimizer)
    tensors['rng.torch'] = torch.get_rng_state()
    state = {'step': step, 'optimizer': opt_meta, 'history': history, **(extra or {})}
    return {OPTIMIZER_FILE: save_bytes(tensors), TRAINER_STATE_FILE: state}


def restore_training_state(directory: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load optimizer state and torch RNG from a checkpoint directory; returns the trainer state json."""
    directory = Path(directory)
    state = json.loads((directory / TRAINER_STATE_FILE).read_text())
    tensors = load_bytes((directory / OPTIMIZER_FILE).read_bytes())
    optimizer.load_state_dict(optimizer_state_from_files(tensors, state['optimizer']))
    if 'rng.torch' in tensors:
        torch.set_rng_state(tensors['rng.torch'])
    return state
