"""Prompts and targets of the high-level decoder, and its policy boundary.

Two modes share one model (the prompt says which):
    subtask:  'Mode: subtask. <metadata> Task: ... Memory: ... History: a; b.'  ->  next subtask text, or <done>
    memory:   'Mode: memory. Task: ... Memory: <old> Done: <subtask just finished>.' ->  the updated memory text

Samples for training are dicts with 'images' {cam: uint8}, 'task', 'memory', 'metadata', 'subtask_history', and
either 'next_subtask' (str) / 'task_done' (bool) for the subtask mode, or 'completed_subtask' + 'updated_memory'
for the memory mode.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from ..common.text_tokenizer import DONE_ID, EOS_ID, metadata_text, train_text_tokenizer
from .configuration_high_level import HighLevelConfig

TOKENIZER_FILE = 'text_tokenizer.json'
PROCESSOR_FILE = 'processor.json'


def subtask_prompt(task: str | None, memory: str | None, history: Sequence[str] | None, metadata: Mapping | None):
    parts = ['Mode: subtask.', metadata_text(metadata), f'Task: {task}.' if task else '',
             f'Memory: {memory}' if memory else '', f"History: {'; '.join(history)}." if history else '']
    return ' '.join(p for p in parts if p)


def memory_prompt(task: str | None, memory: str | None, completed: str | None):
    parts = ['Mode: memory.', f'Task: {task}.' if task else '', f'Memory: {memory}' if memory else '',
             f'Done: {completed}.' if completed else '']
    return ' '.join(p for p in parts if p)


def sample_texts(sample: Mapping[str, Any]) -> tuple[str, str | None, bool]:
    """-> (prompt, target text, target is <done>)."""
    if 'updated_memory' in sample:
        return memory_prompt(sample.get('task'), sample.get('memory'), sample.get('completed_subtask')), \
            sample['updated_memory'], False
    prompt = subtask_prompt(sample.get('task'), sample.get('memory'), sample.get('subtask_history'),
                            sample.get('metadata'))
    return prompt, sample.get('next_subtask'), bool(sample.get('task_done'))


def corpus_of(samples: Iterable[Mapping[str, Any]]) -> list[str]:
    texts = []
    for s in samples:
        texts += [t for t in (s.get('task'), s.get('memory'), s.get('next_subtask'), s.get('updated_memory'),
                              s.get('completed_subtask')) if t]
        texts += list(s.get('subtask_history') or [])
    return texts


@dataclass
class HighLevelProcessor:
    config: HighLevelConfig
    tokenizer: Tokenizer
    camera_names: tuple[str, ...] = ('front', 'wrist')

    @classmethod
    def build(cls, config: HighLevelConfig, samples: Sequence[Mapping[str, Any]] = (), corpus: Iterable[str] = (),
              camera_names: tuple[str, ...] = ('front', 'wrist')) -> HighLevelProcessor:
        tok = train_text_tokenizer([*corpus_of(samples), *corpus], vocab_size=config.vocab_size)
        return cls(config, tok, tuple(camera_names))

    def to_files(self) -> dict[str, Any]:
        return {TOKENIZER_FILE: self.tokenizer.to_str(), PROCESSOR_FILE: {'camera_names': list(self.camera_names)}}

    @classmethod
    def from_checkpoint(cls, ckpt, config: HighLevelConfig) -> HighLevelProcessor:
        return cls(config, Tokenizer.from_str(ckpt.read_text(TOKENIZER_FILE)),
                   tuple(ckpt.read_json(PROCESSOR_FILE)['camera_names']))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def _images(self, samples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
        s, cams = self.config.vision.image_size, self.camera_names
        images = torch.zeros(len(samples), len(cams), 3, s, s)
        mask = torch.zeros(len(samples), len(cams), dtype=torch.bool)
        for i, smp in enumerate(samples):
            for c, cam in enumerate(cams):
                img = (smp.get('images') or {}).get(cam)
                if img is not None:
                    t = torch.as_tensor(np.asarray(img)).permute(2, 0, 1).float()[None] / 127.5 - 1.0
                    images[i, c] = F.interpolate(t, size=(s, s), mode='bilinear', antialias=True)[0]
                    mask[i, c] = True
        if mask.any():
            batch['images'], batch['image_mask'] = images, mask

    def collate(self, samples: Sequence[Mapping[str, Any]], with_targets: bool = True) -> dict[str, torch.Tensor]:
        cfg = self.config
        batch: dict[str, torch.Tensor] = {}
        self._images(samples, batch)
        prompts, targets = [], []
        for smp in samples:
            prompt, target, done = sample_texts(smp)
            prompts.append(self.tokenizer.encode(prompt).ids[-cfg.max_prompt_tokens:])   # keep the end (history)
            if with_targets:
                ids = [DONE_ID] if done else self.tokenizer.encode(target or '').ids
                targets.append(ids[: cfg.max_target_tokens - 1] + [EOS_ID])
        length = max(map(len, prompts))
        batch['prompt_ids'] = torch.zeros(len(samples), length, dtype=torch.long)
        batch['prompt_mask'] = torch.zeros(len(samples), length, dtype=torch.bool)
        for i, ids in enumerate(prompts):
            batch['prompt_ids'][i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            batch['prompt_mask'][i, : len(ids)] = True
        if with_targets:
            batch['target_ids'] = torch.full((len(samples), max(map(len, targets))), -100, dtype=torch.long)
            for i, ids in enumerate(targets):
                batch['target_ids'][i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return batch

    __call__ = collate
