"""Engine: what bundle configs build around MONAI's trainer and evaluators: checkpoint, progress and summary
handlers (training), metrics writers and 3D post-processing (evaluation), prediction writers (inference),
DDP helpers (distributed), one run per folder (run_folders) and TensorBoard handlers (visualize)."""

from pipelines import lazy_submodules

__all__ = ["distributed", "evaluation", "inference", "run_folders", "training", "visualize"]
__getattr__ = lazy_submodules(__name__, __all__)
