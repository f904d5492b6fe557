"""Training: the Lightning module, index-batch data module, callbacks and safe checkpoints."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .run import fit

__all__ = ["Checkpoint", "TrainConfig", "fit", "load_checkpoint", "save_checkpoint"]
