"""Training: one loop for every model family."""

from .optim import build_optimizer, lr_at, param_groups
from .trainer import TrainConfig, load_train_config, train

__all__ = ["TrainConfig", "build_optimizer", "load_train_config", "lr_at", "param_groups", "train"]
