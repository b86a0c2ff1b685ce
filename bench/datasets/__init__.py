"""Datasets: synthetic shapes with masks, its shortcut and textures variants, scikit-image photos, image folders."""
from .base import Batch, DatasetError, ImageDataset
from .folder import ImageFolderDataset
from .photos import SkimagePhotos
from .registry import get_dataset, list_datasets, register_dataset
from .synthetic import SyntheticShapes

register_dataset("synthetic")(lambda **kw: SyntheticShapes(**kw))
register_dataset("shortcut")(lambda **kw: SyntheticShapes(shortcut=True, **kw))
register_dataset("textures")(lambda **kw: SyntheticShapes(evidence="texture", **kw))
register_dataset("skimage")(SkimagePhotos)
register_dataset("folder")(ImageFolderDataset)

__all__ = ["Batch", "DatasetError", "ImageDataset", "ImageFolderDataset", "SkimagePhotos", "SyntheticShapes",
           "get_dataset", "list_datasets", "register_dataset"]
