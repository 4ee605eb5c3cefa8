"""Real-data checks of fldata.datasets: MNIST, Fashion-MNIST, CIFAR-10, and the pixel
conversions.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from fldata.datasets import (
    DATASET_NAMES,
    DataError,
    DataNotFoundError,
    Dataset,
    cache_dir,
    flatten_unit,
    load_dataset,
    to_float_chw,
)

MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # DATA.md
MNIST_UNCOMPRESSED_MD5 = {  # DATA.md
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist")


def folder_of(dataset: Dataset) -> Path:
    """The folder an IDX data set was read from (its ``source`` is '<folder> (IDX)')."""
    assert dataset.source.endswith(" (IDX)"), dataset.source
    return Path(dataset.source[: -len(" (IDX)")])


@pytest.mark.slow
def test_mnist_shapes_dtypes_and_test_class_counts(mnist: Dataset) -> None:
    assert mnist.name == "mnist" and mnist.num_classes == 10
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.int64
    assert mnist.image_shape == (1, 28, 28)
    assert mnist.x_train.flags.writeable and mnist.x_train.flags.c_contiguous
    assert np.bincount(mnist.y_test, minlength=10).tolist() == MNIST_TEST_CLASS_COUNTS
    assert 10000 - np.sum(mnist.y_test == 0) == 9020  # the paper's Table 4 backdoor test size


@pytest.mark.slow
def test_mnist_files_match_data_md_md5_and_arrays_match_their_bytes(mnist: Dataset) -> None:
    folder = folder_of(mnist)
    decompressed = {}
    for stem, md5 in MNIST_UNCOMPRESSED_MD5.items():
        path = folder / stem if (folder / stem).is_file() else folder / f"{stem}.gz"
        raw = path.read_bytes()
        decompressed[stem] = gzip.decompress(raw) if path.suffix == ".gz" else raw
        assert hashlib.md5(decompressed[stem]).hexdigest() == md5, path
    # The loaded arrays are exactly the payload after the 16-byte (images) / 8-byte (labels) header.
    assert mnist.x_train.tobytes() == decompressed["train-images-idx3-ubyte"][16:]
    assert mnist.x_test.tobytes() == decompressed["t10k-images-idx3-ubyte"][16:]
    assert mnist.y_train.astype(np.uint8).tobytes() == decompressed["train-labels-idx1-ubyte"][8:]
    assert mnist.y_test.astype(np.uint8).tobytes() == decompressed["t10k-labels-idx1-ubyte"][8:]


@pytest.mark.slow
def test_fashion_mnist_shapes_and_balanced_classes() -> None:
    try:
        fashion = load_dataset("fashion-mnist")
    except DataNotFoundError as error:
        pytest.skip(
            f"Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist): "
            f"{str(error).splitlines()[0]}"
        )
    assert fashion.x_train.shape == (60000, 28, 28) and fashion.x_test.shape == (10000, 28, 28)
    assert fashion.x_train.dtype == np.uint8 and fashion.y_test.dtype == np.int64
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert not np.array_equal(fashion.x_test[:100], load_dataset("mnist").x_test[:100])


@pytest.mark.slow
def test_cifar10_real_archive_loads_and_is_cached() -> None:
    cifar = load_dataset("cifar10")  # ~10 s the first time (xz), then read from the .npz cache
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.x_test.shape == (10000, 32, 32, 3)
    assert cifar.x_train.dtype == np.uint8 and cifar.y_train.dtype == np.int64
    assert cifar.image_shape == (3, 32, 32)
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    # Natural images: the three channels differ, and pixel values span the full range.
    assert not np.array_equal(cifar.x_test[..., 0], cifar.x_test[..., 1])
    assert cifar.x_train.min() == 0 and cifar.x_train.max() == 255
    if "archive" in cifar.source:
        assert any(cache_dir().glob("cifar10-*.npz"))
        again = load_dataset("cifar10")
        assert np.array_equal(again.x_test, cifar.x_test) and np.array_equal(
            again.y_train, cifar.y_train
        )


def test_to_float_chw_grey_and_rgb() -> None:
    grey = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)  # (1, 2, 2)
    out = to_float_chw(grey)
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [[0.0, 1.0], [0.2, 0.4]], rtol=1e-7)
    rgb = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    rgb[1, 2, 3] = (255, 0, 128)
    chw = to_float_chw(rgb, np.float64)
    assert chw.shape == (2, 3, 3, 4) and chw.dtype == np.float64 and chw.flags.c_contiguous
    assert np.all(chw[0, 0] == 10 / 255) and np.all(chw[0, 2] == 30 / 255)
    assert (chw[1, 0, 2, 3], chw[1, 1, 2, 3], chw[1, 2, 2, 3]) == (1.0, 0.0, 128 / 255)


def test_to_float_chw_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_float_chw(np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        to_float_chw(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="floating"):
        to_float_chw(np.zeros((1, 4, 4), dtype=np.uint8), dtype=np.int32)


def test_flatten_unit_is_channel_first_pixels_over_255(mnist: Dataset) -> None:
    flat = flatten_unit(mnist.x_test[:50])
    assert flat.shape == (50, 784) and flat.dtype == np.float64
    assert flat.min() == 0.0 and flat.max() == 1.0
    np.testing.assert_array_equal(flat * 255, mnist.x_test[:50].reshape(50, -1))
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 5, 6, 3), dtype=np.uint8)
    flat_rgb = flatten_unit(rgb)
    assert flat_rgb.shape == (3, 90)
    # channel-first order: the first H*W entries are the red plane, then green, then blue
    for channel in range(3):
        np.testing.assert_array_equal(
            flat_rgb[:, channel * 30 : (channel + 1) * 30] * 255, rgb[..., channel].reshape(3, -1)
        )


def test_unknown_name_and_aliases(mnist: Dataset) -> None:
    with pytest.raises(
        ValueError, match="unknown data set 'imagenet'.*mnist, fashion-mnist, cifar10, digits"
    ):
        load_dataset("imagenet")
    assert DATASET_NAMES == ("mnist", "fashion-mnist", "cifar10", "digits")
    assert np.array_equal(load_dataset(" MNIST ").y_test, mnist.y_test)


def test_dataset_constructor_validates() -> None:
    images = np.zeros((4, 2, 2), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3], dtype=np.int64)
    ok = Dataset("toy", images, labels, images, labels, 4, "memory")
    assert ok.image_shape == (1, 2, 2)
    with pytest.raises(DataError, match="label value 3 at index 3 is out of range 0..2"):
        Dataset("toy", images, labels, images, labels, 3, "memory")
    with pytest.raises(DataError, match="3 labels but 4 images"):
        Dataset("toy", images, labels[:3], images, labels, 4, "memory")
    with pytest.raises(DataError, match="uint8"):
        Dataset("toy", images.astype(np.float32), labels, images, labels, 4, "memory")
    with pytest.raises(DataError, match="int64"):
        Dataset("toy", images, labels.astype(np.int32), images, labels, 4, "memory")
    with pytest.raises(DataError, match="train images are"):
        Dataset("toy", images, labels, np.zeros((4, 3, 3), np.uint8), labels, 4, "memory")
