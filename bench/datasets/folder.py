"""Any folder of images in torchvision's ImageFolder layout, with an optional parallel mask folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .base import DatasetError, ImageDataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageFolderDataset(ImageDataset):
    """``root/<class>/<image>``; masks (optional) at ``masks_root/<class>/<image stem>.*`` (non-zero = object).

    Images must be RGB (a grayscale or RGBA file is a clear error naming the file, unless
    ``convert_rgb=True``); they are resized to ``image_size`` x ``image_size``.
    """

    def __init__(self, root: str | Path, *, masks_root: str | Path | None = None, image_size: int = 224,
                 convert_rgb: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder not found: {self.root}")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not classes:
            raise DatasetError(f"image folder {self.root} has no class sub-folders (expected root/<class>/<image>)")
        self.samples = [(path, label) for label, cls in enumerate(classes)
                        for path in sorted((self.root / cls).iterdir()) if path.suffix.lower() in EXTENSIONS]
        if not self.samples:
            raise DatasetError(f"image folder {self.root} holds no images with extensions {EXTENSIONS}")
        self.masks_root = Path(masks_root) if masks_root is not None else None
        if self.masks_root is not None and not self.masks_root.is_dir():
            raise DatasetError(f"mask folder not found: {self.masks_root}")
        self.name, self.class_names, self.num_classes = "folder", tuple(classes), len(classes)
        self.image_size, self.convert_rgb, self.has_masks = image_size, convert_rgb, self.masks_root is not None

    def __len__(self) -> int:
        return len(self.samples)

    def config(self) -> dict:
        return {"name": self.name, "root": str(self.root), "masks_root": str(self.masks_root) if self.masks_root else None,
                "image_size": self.image_size}

    def _mask_path(self, image_path: Path) -> Path:
        relative = image_path.relative_to(self.root)
        folder = self.masks_root / relative.parent
        for candidate in sorted(folder.glob(relative.stem + ".*")):
            return candidate
        raise DatasetError(f"no mask for {image_path} under {folder}")

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor | None]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            if image.mode != "RGB":
                if not self.convert_rgb:
                    raise DatasetError(f"{path} has mode {image.mode} ({len(image.getbands())} channels); "
                                       "RGB images expected (pass convert_rgb=True to convert)")
                image = image.convert("RGB")
            image = image.resize((self.image_size, self.image_size), Image.BILINEAR)
            tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        mask = None
        if self.masks_root is not None:
            with Image.open(self._mask_path(path)) as m:
                m = m.convert("L").resize((self.image_size, self.image_size), Image.NEAREST)
                mask = torch.from_numpy(np.asarray(m) > 0)[None]
        return tensor, label, mask
