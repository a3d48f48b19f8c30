"""Training: configurations, pluggable per-batch losses, and the loop."""
from .config import OPTIMIZERS, SCHEDULES, TrainConfig
from .losses import METHOD_TITLES, METHODS, TRAINING_METHODS, MethodSpec, BatchContext, BatchLoss, training_method
from .loop import ProgressEvent, TrainingCancelled, TrainResult, evaluate, train_model

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "TrainConfig", "METHOD_TITLES", "METHODS", "MethodSpec", "TRAINING_METHODS",
    "BatchContext", "BatchLoss",
    "training_method", "ProgressEvent", "TrainingCancelled", "TrainResult", "evaluate", "train_model",
]
