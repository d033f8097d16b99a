"""Text tokenizers trained with HuggingFace `tokenizers` on the project's corpus (instructions, subtasks,
memory summaries, metadata text) and stored as one json file in the checkpoint.

Byte-level BPE: any string encodes (no unknown tokens), and decoding gives the text back. A real checkpoint's
tokenizer (e.g. PaliGemma's) would instead be loaded from its own tokenizer.json with `load_text_tokenizer`.
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, BOS, EOS, DONE = '<pad>', '<bos>', '<eos>', '<done>'
SPECIAL_TOKENS = [PAD, BOS, EOS, DONE]
PAD_ID, BOS_ID, EOS_ID, DONE_ID = range(4)   # the trainer gives special tokens the first ids, in this order

# Phrases every pi07 prompt uses, so a tokenizer trained on a small corpus still covers them compactly.
BASE_CORPUS = [
    'Task: ', 'Subtask: ', 'Memory: ', 'History: ', 'Next: ', 'Update: ', 'Done: ',
    'Speed: 1. Quality: 5. Mistake: no. Control: joint.', 'Speed: 3. Quality: 2. Mistake: yes. Control: ee.',
    'pick up the red block', 'put the blue block in the bowl', 'open the drawer', 'close the gripper',
    'move to the left', 'place it on the plate', 'I have put the red block in the bowl.', 'task done',
]


def train_text_tokenizer(corpus: Iterable[str], vocab_size: int = 1024, min_frequency: int = 1) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([*BASE_CORPUS, *corpus], trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, DONE_ID]
    return tok


def load_text_tokenizer(path_or_json: str) -> Tokenizer:
    return Tokenizer.from_str(path_or_json) if path_or_json.lstrip().startswith('{') else Tokenizer.from_file(
        path_or_json)


def special_id(tok: Tokenizer, token: str) -> int:
    i = tok.token_to_id(token)
    if i is None:
        raise KeyError(f'tokenizer has no {token}')
    return i


def metadata_text(metadata: dict | None) -> str:
    """EpisodeMetadata as prompt text (pi0.7): 'Speed: 2. Quality: 5. Mistake: no. Control: joint.'; absent
    fields are left out, so a prompt without metadata is simply shorter."""
    if not metadata:
        return ''
    parts = []
    if metadata.get('speed') is not None:
        parts.append(f"Speed: {int(metadata['speed'])}.")
    if metadata.get('quality') is not None:
        parts.append(f"Quality: {int(metadata['quality'])}.")
    if metadata.get('mistake') is not None:
        parts.append(f"Mistake: {'yes' if metadata['mistake'] else 'no'}.")
    if metadata.get('control_mode'):
        parts.append(f"Control: {metadata['control_mode']}.")
    return ' '.join(parts)
