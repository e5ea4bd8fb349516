"""Datasets of SPEC §1 (one `Dataset` type, the loaders by name)."""
from .idx import DATASETS, IMAGE_SHAPES, Dataset, load_dataset

__all__ = ["DATASETS", "IMAGE_SHAPES", "Dataset", "load_dataset"]
