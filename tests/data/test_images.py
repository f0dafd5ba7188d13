import gzip
import pickle

import numpy as np
import pytest
import torch

from conftest import shared_data
from polyformer import DataError
from polyformer.data import images as im


def _write_idx_images(path, arr: np.ndarray, gz=True):
    n, r, c = arr.shape
    raw = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + r.to_bytes(4, "big") + c.to_bytes(4, "big")
    raw += arr.astype(np.uint8).tobytes()
    (gzip.open(path, "wb") if gz else open(path, "wb")).write(raw)


def _write_idx_labels(path, labels, gz=True):
    raw = (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + bytes(labels)
    (gzip.open(path, "wb") if gz else open(path, "wb")).write(raw)


def test_mnist_idx_gz_and_raw(tmp_path):
    imgs = np.random.randint(0, 256, (5, 28, 28))
    _write_idx_images(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx_labels(tmp_path / "train-labels-idx1-ubyte", [0, 1, 2, 3, 4], gz=False)
    x, y = im.load_mnist(tmp_path, "train")
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.uint8 and y.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(x[:, 0], torch.from_numpy(imgs.astype(np.uint8)))


def test_corrupt_idx_is_a_clear_error(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x04" + b"\x00" * 20))
    with pytest.raises(DataError, match="magic number"):
        im.read_idx(tmp_path / "bad.gz")
    _write_idx_images(tmp_path / "short", np.zeros((2, 4, 4)), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(DataError, match="promises 32 bytes"):
        im.read_idx(tmp_path / "short")
    (tmp_path / "notgz.gz").write_bytes(b"plain bytes, not gzip")
    with pytest.raises(DataError, match="cannot read"):
        im.read_idx(tmp_path / "notgz.gz")


def test_image_folder_converts_modes_and_rejects_non_images(tmp_path):
    from PIL import Image

    for cls, mode in (("cat", "RGB"), ("dog", "L"), ("dog", "RGBA")):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.new(mode, (6, 6)).save(tmp_path / cls / f"{mode}.png")
    x, y, classes = im.load_image_folder(tmp_path, channels=3)
    assert x.shape == (3, 3, 6, 6) and classes == ["cat", "dog"] and y.tolist() == [0, 1, 1]
    g, _, _ = im.load_image_folder(tmp_path, channels=1, size=4)
    assert g.shape == (3, 1, 4, 4)
    (tmp_path / "dog" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        im.load_image_folder(tmp_path)


def test_cifar_binary_and_python_batches(tmp_path):
    recs = np.random.randint(0, 256, (4, 3073)).astype(np.uint8)
    recs[:, 0] = [3, 1, 4, 1]
    (tmp_path / "data_batch_1.bin").write_bytes(recs.tobytes())
    x, y = im.load_cifar_batch(tmp_path / "data_batch_1.bin")
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [3, 1, 4, 1]
    assert torch.equal(x[0].reshape(-1), torch.from_numpy(recs[0, 1:]))
    batch = {b"data": recs[:, 1:], b"labels": [3, 1, 4, 1]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    x2, y2 = im.load_cifar_batch(tmp_path / "data_batch_1")
    assert torch.equal(x, x2) and torch.equal(y, y2)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        im.load_cifar_batch(tmp_path / "evil")
    (tmp_path / "odd.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="whole number of records"):
        im.load_cifar_batch(tmp_path / "odd.bin")


def test_digits_and_batch_augmentation():
    x, y = im.load_digits()
    assert x.shape == (1797, 1, 8, 8) and int(y.max()) == 9 and int(x.max()) == 255
    data = im.ImageData(x, y, mean=[0.5], std=[0.5])
    g = torch.Generator().manual_seed(0)
    xb, yb = data.batch(list(range(16)), crop_padding=2, flip=True, generator=g)
    assert xb.shape == (16, 1, 8, 8) and xb.min() >= -1 and xb.max() <= 1
    plain, _ = data.batch(list(range(16)))
    assert torch.equal(plain, (x[:16].float() / 255 - 0.5) / 0.5)


def test_random_crop_is_a_shifted_window():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = im.random_crop(x, 1, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = [padded[..., i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
    assert any(torch.equal(out, w) for w in windows)


def test_real_mnist_counts():
    x, y = im.load_mnist(shared_data("mnist"), "test")
    assert x.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
