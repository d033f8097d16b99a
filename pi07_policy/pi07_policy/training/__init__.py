"""Shared training code: the loop, training state as safetensors + json, loss plots, torch.distributed helpers."""
from .distributed import DistInfo, cleanup_distributed, dist_info, init_distributed, spawn_local
from .loop import CHECKPOINT_DIR, TrainConfig, TrainResult, lr_at, make_optimizer, seed_everything, train, unwrap
from .plots import plot_losses
from .state import OPTIMIZER_FILE, TRAINER_STATE_FILE, restore_training_state, training_state_files

__all__ = ['CHECKPOINT_DIR', 'OPTIMIZER_FILE', 'TRAINER_STATE_FILE', 'DistInfo', 'TrainConfig', 'TrainResult',
           'cleanup_distributed', 'dist_info', 'init_distributed', 'lr_at', 'make_optimizer', 'plot_losses',
           'restore_training_state', 'seed_everything', 'spawn_local', 'train', 'training_state_files', 'unwrap']
