"""Datasets: synthetic shapes with masks, its shortcut and textures variants, scikit-image photos, image folders,
and synthetic sentences with evidence tokens (text, text_shortcut)."""
from .base import Batch, DatasetError, ImageDataset
from .folder import ImageFolderDataset
from .photos import SkimagePhotos
from .registry import get_dataset, list_datasets, register_dataset
from .synthetic import SyntheticShapes
from .text import SyntheticText

register_dataset("synthetic")(lambda **kw: SyntheticShapes(**kw))
register_dataset("shortcut")(lambda **kw: SyntheticShapes(shortcut=True, **kw))
register_dataset("textures")(lambda **kw: SyntheticShapes(evidence="texture", **kw))
register_dataset("skimage")(SkimagePhotos)
register_dataset("folder")(ImageFolderDataset)
register_dataset("text")(lambda **kw: SyntheticText(**kw))
register_dataset("text_shortcut")(lambda **kw: SyntheticText(shortcut=True, **kw))

__all__ = ["Batch", "DatasetError", "ImageDataset", "ImageFolderDataset", "SkimagePhotos", "SyntheticShapes",
           "SyntheticText", "get_dataset", "list_datasets", "register_dataset"]
