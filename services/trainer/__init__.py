"""admuse trainer service (see DESIGN.md §1): GAN + reward model, ONNX export, signed publish.

Public entry points (tools use only these): `train_campaign(settings, campaign, creatives,
rows, ...)` trains one campaign's models exactly as the service loop does, `store_model`
writes a judged model to the model store; `TrainerState`/`TrainingBuffer` hold what the
trainer reads from Kafka, `Settings` its configuration, `pick_device` its CUDA/CPU choice.
"""

from services.trainer.buffer import TrainingBuffer
from services.trainer.pipeline import BuiltModel, QualityRefused, store_model, train_campaign
from services.trainer.settings import Settings
from services.trainer.state import TrainerState
from services.trainer.train import pick_device

__all__ = [
    "BuiltModel",
    "QualityRefused",
    "Settings",
    "TrainerState",
    "TrainingBuffer",
    "pick_device",
    "store_model",
    "train_campaign",
]
