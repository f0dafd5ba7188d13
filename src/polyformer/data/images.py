"""Image data: MNIST IDX files, image folders, CIFAR-10/100 batch files, scikit-learn's 8x8 digits.

Every loader returns ``(images, labels)``: a uint8 tensor [N, C, H, W] and an int64 tensor [N].
:class:`ImageData` then serves normalised float batches with optional training augmentation
(random crop after zero padding, horizontal flip), done on whole batches with tensor ops so a step
costs no per-image Python work.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# ------------------------------------------------------------------------------------------- MNIST
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw): magic 2051 -> uint8 [N, rows, cols]; 2049 -> uint8 [N]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist")
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 8:
        raise DataError(f"corrupt IDX file {path}: only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic == 2051:
        if len(raw) < 16:
            raise DataError(f"corrupt IDX file {path}: truncated header")
        n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
        body, shape = raw[16:], (n, rows, cols)
    elif magic == 2049:
        n = int.from_bytes(raw[4:8], "big")
        body, shape = raw[8:], (n,)
    else:
        raise DataError(f"corrupt IDX file {path}: magic number {magic}, expected 2051 (images) or 2049 (labels)")
    need = int(np.prod(shape))
    if len(body) != need:
        raise DataError(f"corrupt IDX file {path}: header promises {need} bytes of data, file has {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_mnist(folder: str | os.PathLike, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from LeCun's file names (gzipped or not) in ``folder``; split 'train' or 'test'."""
    folder = Path(folder)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"MNIST split must be 'train' or 'test', got {split!r}")

    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
        raise DataError(f"MNIST file {stem}(.gz) not found in {folder}")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"MNIST files in {folder} disagree: {images.shape} images, {labels.shape} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


# ------------------------------------------------------------------------------------------- folders
def load_image_folder(root: str | os.PathLike, channels: int = 3, size: int | None = None):
    """``root/<class>/<image>``: classes are the sorted subfolder names. Any Pillow mode is converted to
    ``channels`` (1 = greyscale, 3 = RGB); images are resized to ``size`` x ``size`` when given, and must
    otherwise all have the same size. Returns (images, labels, class_names)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {root} has no class subfolders (expected root/<class>/<image>)")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"channels must be 1 or 3, got {channels}")
    arrays, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert(mode)
                    if size is not None:
                        im = im.resize((size, size), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"{f} is not a readable image: {e}") from None
            if arrays and a.shape != arrays[0].shape:
                raise DataError(
                    f"{f} is {a.shape[1]}x{a.shape[0]}, others are "
                    f"{arrays[0].shape[1]}x{arrays[0].shape[0]}: pass size= to resize"
                )
            arrays.append(a)
            labels.append(label)
    if not arrays:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)
    return x.contiguous(), torch.tensor(labels, dtype=torch.int64), classes


# ------------------------------------------------------------------------------------------- CIFAR
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; allow only the numpy pieces they need, nothing executable."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            import importlib

            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def load_cifar_batch(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10/100 batch: the binary version (``*.bin``: label byte(s) + 3072 pixel bytes per
    image) or the python version (a pickled dict, read with a numpy-only unpickler)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CIFAR batch {path} does not exist")
    raw = path.read_bytes()
    if path.suffix == ".bin":
        # CIFAR-10 records: 1 label byte + 3072 pixels; CIFAR-100: coarse and fine label bytes + 3072
        label_bytes = 1 if len(raw) % 3073 == 0 else 2 if len(raw) % 3074 == 0 else 0
        if not raw or not label_bytes:
            raise DataError(f"corrupt CIFAR binary batch {path}: {len(raw)} bytes is not a whole number of records")
        a = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3072 + label_bytes)
        return (
            torch.from_numpy(a[:, label_bytes:].reshape(-1, 3, 32, 32).copy()),
            torch.from_numpy(a[:, label_bytes - 1].astype(np.int64)),
        )
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read CIFAR batch {path}: {e}") from None
    data = d.get(b"data")
    labels = d.get(b"labels", d.get(b"fine_labels"))
    if data is None or labels is None:
        raise DataError(f"{path} is not a CIFAR batch (no data/labels)")
    return torch.from_numpy(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).copy()), torch.tensor(
        list(labels), dtype=torch.int64
    )


# ------------------------------------------------------------------------------------------- digits
def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1,797 images, 16 grey levels scaled to 0..255)."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DataError("the 8x8 digits need scikit-learn: pip install scikit-learn") from None
    d = sk_digits()
    x = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


# ------------------------------------------------------------------------------------------- batches
class ImageData:
    """uint8 images in memory -> normalised float batches, with batch-wise augmentation."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean=None, std=None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels
        c = images.shape[1]
        self.mean = torch.tensor(mean if mean is not None else [0.5] * c).view(1, c, 1, 1)
        self.std = torch.tensor(std if std is not None else [0.5] * c).view(1, c, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx, crop_padding: int = 0, flip: bool = False, generator=None):
        x = self.images[idx].float().div_(255.0)
        if crop_padding:
            x = random_crop(x, crop_padding, generator)
        if flip:
            x = random_hflip(x, generator)
        return (x - self.mean) / self.std, self.labels[idx]


def random_crop(x: torch.Tensor, pad: int, generator=None) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut a random window of the original size, per image."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).view(b, 1, 1, w).expand(b, c, h, w)
    return x.gather(3, cols)


def random_hflip(x: torch.Tensor, generator=None) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
