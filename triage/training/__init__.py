"""Training: fine-tune a backbone, select on validation, calibrate, set the operating point, write a run folder.

Read in the order of a run: :mod:`.config` (what a run is told), :mod:`.dataset` and :mod:`.sampling` (what it
sees), :mod:`.augment`, :mod:`.loop` (one epoch, validation, the saved state), :mod:`.evaluation`,
:mod:`.calibration`, :mod:`.baselines` and :mod:`.run` (the whole run, ending in a checkpoint written by
:mod:`triage.checkpoint`). Serving never imports this package.
"""

from triage.training.config import TrainConfig, seed_everything
from triage.training.dataset import CachedImages, Split, images_for, load_splits
from triage.training.distributed import DistInfo, init_distributed
from triage.training.evaluation import calibrated_probs, evaluate_arrays, predict_logits, recalibrate_batchnorm
from triage.training.loop import train_model
from triage.training.run import run
from triage.training.sampling import DistributedWeightedSampler, sample_weights

__all__ = [
    "CachedImages",
    "DistInfo",
    "DistributedWeightedSampler",
    "Split",
    "TrainConfig",
    "calibrated_probs",
    "evaluate_arrays",
    "images_for",
    "init_distributed",
    "load_splits",
    "predict_logits",
    "recalibrate_batchnorm",
    "run",
    "sample_weights",
    "seed_everything",
    "train_model",
]
