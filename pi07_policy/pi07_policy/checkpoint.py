"""Checkpoints as plain directories: json + safetensors, never pickle.

Layout of a checkpoint directory::

    config.json          {"model_type", "format_version", "config": {...}, "embodiment", "files": {name: ...}}
    model.safetensors    the model's state dict (tensors only)
    norm_stats.json      normalisation statistics (optional)
    profile.yaml         the robot profile the model was trained for (optional)
    <tokenizer files>    e.g. fast_tokenizer.json, text_tokenizer.json (optional, written by the model's code)
    optimizer.safetensors + trainer_state.json   (optional, written by the training loop to resume)

Every file is listed in config.json with its size and sha256, so a truncated or corrupt file is caught when the
checkpoint is opened, before any weight is used. Configs are frozen dataclasses; `config_to_dict` /
`config_from_dict` convert them (nested dataclasses and tuples included) to and from json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
NORM_STATS_FILE = 'norm_stats.json'
PROFILE_FILE = 'profile.yaml'


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be used: the message says which file or tensor and why."""


# --------------------------------------------------------------------------------------------- config <-> json
def config_to_dict(config: Any) -> Any:
    """A frozen dataclass (possibly nested, with tuples) as json-ready dicts and lists."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {str(k): config_to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def _from_json_value(tp: Any, value: Any) -> Any:
    """Rebuild a value of annotated type `tp` from json (dataclasses, tuples, optionals)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_json_value(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json_value(args[0], v) for v in value)
        if args:
            return tuple(_from_json_value(a, v) for a, v in zip(args, value))
        return tuple(value)
    if tp is tuple:
        return tuple(value)
    if origin is dict:
        _, value_type = typing.get_args(tp) or (Any, Any)
        return {k: _from_json_value(value_type, v) for k, v in value.items()}
    return value


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Inverse of `config_to_dict` for dataclass `cls`; unknown keys are an error (a config from another model)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f'config has fields {unknown} that {cls.__name__} does not know')
    return cls(**{k: _from_json_value(hints.get(k, Any), v) for k, v in data.items()})


# --------------------------------------------------------------------------------------------- save
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _write_extra(path: Path, content: Any) -> None:
    if isinstance(content, os.PathLike):   # a file to copy (a plain str is content, never a path)
        shutil.copyfile(content, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:  # dicts / lists: json
        path.write_text(json.dumps(content, indent=1, sort_keys=True))


def state_dict_for_saving(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, shared (tied) storage de-duplicated by cloning (safetensors refuses aliases)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to('cpu')
        key = t.untyped_storage().data_ptr() if t.numel() else -1
        if key in seen:
            t = t.clone()
        seen.add(key)
        out[name] = t.contiguous()
    return out


def save_checkpoint(directory: str | os.PathLike, model: torch.nn.Module | Mapping[str, torch.Tensor], config: Any,
                    *, model_type: str | None = None, extra_files: Mapping[str, Any] | None = None,
                    norm_stats: Mapping[str, Any] | None = None, profile: str | os.PathLike | None = None,
                    embodiment: str | None = None, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint directory atomically (a temp dir renamed into place) and return its path.

    `config` is a (frozen) dataclass or a dict; `model_type` defaults to `config.model_type`. `extra_files` maps a
    file name to its content: a Path to copy, bytes, str (text), or a json-able object. `embodiment` (e.g. the profile
    name) is checked again at load time.
    """
    directory = Path(directory)
    model_type = model_type or getattr(config, 'model_type', None)
    if not model_type:
        raise ValueError('save_checkpoint needs a model_type (argument or config.model_type)')
    state = state_dict_for_saving(model) if isinstance(model, torch.nn.Module) else dict(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{directory.name}.tmp-', dir=directory.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={'model_type': model_type})
        files = dict(extra_files or {})
        if norm_stats is not None:
            files[NORM_STATS_FILE] = norm_stats
        if profile is not None:
            files[PROFILE_FILE] = Path(profile) if isinstance(profile, os.PathLike) else str(profile)
        for name, content in files.items():
            if name in (CONFIG_FILE, WEIGHTS_FILE) or '/' in name or name.startswith('.'):
                raise ValueError(f'extra file name {name!r} is not allowed')
            _write_extra(tmp / name, content)
        manifest = {p.name: {'size': p.stat().st_size, 'sha256': _sha256(p)} for p in sorted(tmp.iterdir())}
        cfg = config_to_dict(config) if not isinstance(config, Mapping) else dict(config)
        meta = {'model_type': model_type, 'format_version': FORMAT_VERSION, 'config': cfg,
                'embodiment': embodiment, 'metadata': dict(metadata or {}), 'files': manifest}
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
        if directory.exists():
            old = directory.with_name(f'.{directory.name}.old-{os.getpid()}')
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def add_files_to_checkpoint(directory: str | os.PathLike, files: Mapping[str, Any]) -> None:
    """Add (or replace) extra files in an existing checkpoint and update its manifest (used for training state)."""
    directory = Path(directory)
    meta = _read_config_json(directory)
    for name, content in files.items():
        if name in (CONFIG_FILE, WEIGHTS_FILE) or '/' in name:
            raise ValueError(f'file name {name!r} is not allowed')
        _write_extra(directory / name, content)
        meta['files'][name] = {'size': (directory / name).stat().st_size, 'sha256': _sha256(directory / name)}
    tmp = directory / f'.{CONFIG_FILE}.tmp'
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(directory / CONFIG_FILE)


# --------------------------------------------------------------------------------------------- load
@dataclass
class Checkpoint:
    """An opened, verified checkpoint directory."""

    directory: Path
    model_type: str
    config_dict: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    embodiment: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    config: Any = None  # the dataclass, when load_checkpoint was given config_cls

    def has(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        if name not in self.files:
            raise CheckpointError(f'{self.directory}: checkpoint has no file {name!r} (has {sorted(self.files)})')
        return self.directory / name

    def read_json(self, name: str) -> Any:
        return json.loads(self.path(name).read_text())

    def read_text(self, name: str) -> str:
        return self.path(name).read_text()

    @property
    def norm_stats(self) -> dict[str, Any] | None:
        return self.read_json(NORM_STATS_FILE) if self.has(NORM_STATS_FILE) else None


def _read_config_json(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise CheckpointError(f'{directory}: checkpoint directory does not exist')
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f'{directory}: missing {CONFIG_FILE} (not a pi07 checkpoint directory?)')
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f'{path}: corrupt or truncated json ({e})') from e
    for key in ('model_type', 'format_version', 'config', 'files'):
        if key not in meta:
            raise CheckpointError(f'{path}: no {key!r} entry (not a pi07 checkpoint, or written by another tool)')
    return meta


def verify_files(directory: Path, manifest: Mapping[str, Mapping[str, Any]], check_hash: bool = True) -> None:
    """Every file of the manifest is present with its size (and sha256): else CheckpointError naming the file."""
    for name, info in manifest.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f'{directory}: missing file {name} (listed in {CONFIG_FILE})')
        size = path.stat().st_size
        if size != info['size']:
            raise CheckpointError(f'{path}: truncated or modified file: {size} bytes, expected {info["size"]}')
        if check_hash and _sha256(path) != info['sha256']:
            raise CheckpointError(f'{path}: corrupt file: sha256 does not match the one in {CONFIG_FILE}')


def load_checkpoint(directory: str | os.PathLike, expected_model_type: str | tuple[str, ...] | None = None, *,
                    config_cls: type | None = None, model: torch.nn.Module | None = None,
                    expected_embodiment: str | None = None, check_hash: bool = True,
                    map_location: str | torch.device = 'cpu') -> Checkpoint:
    """Open and verify a checkpoint; fail at once with a message that says what is wrong.

    Checks, in order: the directory and config.json, format version, model type, embodiment, every file's size
    and hash, that the weights parse. With `config_cls` the config is rebuilt as that dataclass; with `model` the
    weights are loaded into it, strict, with a message naming any missing, unexpected or mis-shaped tensor.
    """
    directory = Path(directory)
    meta = _read_config_json(directory)
    if meta['format_version'] > FORMAT_VERSION:
        raise CheckpointError(f'{directory}: format_version {meta["format_version"]} is newer than this code '
                              f'reads ({FORMAT_VERSION})')
    model_type = meta['model_type']
    if expected_model_type is not None:
        allowed = (expected_model_type,) if isinstance(expected_model_type, str) else tuple(expected_model_type)
        if model_type not in allowed:
            raise CheckpointError(f'{directory}: checkpoint holds a {model_type!r} model, expected '
                                  f'{" or ".join(repr(a) for a in allowed)}')
    embodiment = meta.get('embodiment')
    if expected_embodiment is not None and embodiment is not None and embodiment != expected_embodiment:
        raise CheckpointError(f'{directory}: checkpoint was trained for embodiment {embodiment!r}, '
                              f'not {expected_embodiment!r}')
    if WEIGHTS_FILE not in meta['files']:
        raise CheckpointError(f'{directory}: {CONFIG_FILE} lists no {WEIGHTS_FILE}')
    verify_files(directory, meta['files'], check_hash=check_hash)
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f'{directory / WEIGHTS_FILE}: unreadable safetensors file ({e})') from e
    ckpt = Checkpoint(directory=directory, model_type=model_type, config_dict=meta['config'], state_dict=state,
                      embodiment=embodiment, metadata=meta.get('metadata', {}), files=meta['files'])
    if config_cls is not None:
        ckpt.config = config_from_dict(config_cls, meta['config'])
    if model is not None:
        load_weights(model, state, source=str(directory))
    return ckpt


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = 'checkpoint') -> None:
    """Strict load with a readable error: lists missing/unexpected names and every shape mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    problems = []
    if mismatched:
        problems.append('shape mismatch for ' + '; '.join(mismatched[:10]) + (' ...' if len(mismatched) > 10 else ''))
    if missing:
        problems.append(f'missing tensors {missing[:10]}' + (' ...' if len(missing) > 10 else ''))
    if unexpected:
        problems.append(f'unexpected tensors {unexpected[:10]}' + (' ...' if len(unexpected) > 10 else ''))
    if problems:
        raise CheckpointError(f'{source}: weights do not fit the model: ' + ' | '.join(problems))
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(dtype=v.dtype))


__all__ = ['CONFIG_FILE', 'FORMAT_VERSION', 'NORM_STATS_FILE', 'PROFILE_FILE', 'WEIGHTS_FILE', 'Checkpoint',
           'CheckpointError', 'add_files_to_checkpoint', 'config_from_dict', 'config_to_dict', 'load_checkpoint',
           'load_weights', 'save_checkpoint', 'state_dict_for_saving', 'verify_files']
