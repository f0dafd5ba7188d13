"""polyformer: the main types of transformer under one roof, in plain PyTorch.

>>> import polyformer
>>> model = polyformer.create_model("transformer-tiny")
>>> polyformer.list_models("lm-*")
['lm-gpt2', 'lm-small', 'lm-tiny']
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    PolyformerError,
    SequenceTooLongError,
    UnknownModelError,
)
from .modeling import ModelOutput, PolyModel, from_pretrained  # noqa: E402
from .registry import build_model, create_model, get_config, list_models  # noqa: E402

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelOutput",
    "PolyModel",
    "PolyformerError",
    "SequenceTooLongError",
    "UnknownModelError",
    "__version__",
    "build_model",
    "create_model",
    "from_pretrained",
    "get_config",
    "list_models",
]
