"""``python -m fldata``: a quick check of which data sets load, and what they hold.

Prints, for each data set, its shapes, dtypes, class counts and source, or one clear
line saying why it could not be loaded.  Exit status 0 iff MNIST loads (when MNIST is
not among the requested names: iff no requested set was found corrupt); otherwise 3, the
data-error status of every fliplab CLI (fldata.cli), and 2 for an unknown data-set name.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fldata.cli import EXIT_IO, EXIT_USAGE, main_guard
from fldata.datasets import DATASET_NAMES, DataError, DataNotFoundError, Dataset, load_dataset


def describe(dataset: Dataset, seconds: float) -> list[str]:
    """Human-readable lines summarising a loaded data set."""
    lines = [f"{dataset.name}: loaded in {seconds:.2f} s from {dataset.source}"]
    for split, images, labels in (
        ("train", dataset.x_train, dataset.y_train),
        ("test", dataset.x_test, dataset.y_test),
    ):
        counts = np.bincount(labels, minlength=dataset.num_classes)
        lines.append(
            f"  {split:5s} images {images.shape} {images.dtype}, labels {labels.shape} "
            f"{labels.dtype}, class counts {' '.join(map(str, counts))}"
        )
    lines.append(
        f"  image_shape (C,H,W) = {dataset.image_shape}, num_classes = {dataset.num_classes}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Load each requested data set and print a summary; see the module docstring for the exit
    status.
    """
    return main_guard(lambda: _report(argv))


def _report(argv: list[str] | None) -> int:
    """:func:`main`'s body: parse, load and print."""
    parser = argparse.ArgumentParser(prog="python -m fldata", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names",
        nargs="*",
        default=list(DATASET_NAMES),
        help=f"data sets to load (default: all of {', '.join(DATASET_NAMES)})",
    )
    parser.add_argument(
        "--root",
        default=None,
        help="search only this folder (default: $FLIPLAB_DATA, then system locations)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every place searched")
    args = parser.parse_args(argv)
    loaded, corrupt, unknown = set(), False, False
    for name in args.names:
        start = time.perf_counter()
        try:
            dataset = load_dataset(name, root=args.root)
        except DataNotFoundError as error:
            message = str(error)
            print(
                f"{name}: NOT AVAILABLE -- {message if args.verbose else message.splitlines()[0]}"
            )
            if not args.verbose and len(message.splitlines()) > 1:
                print(f"  {message.splitlines()[-1]}  (-v lists the places searched)")
            continue
        except DataError as error:
            corrupt = True
            print(f"{name}: CORRUPT -- {error}")
            continue
        except ValueError as error:  # an unknown name (load_dataset's only other error)
            unknown = True
            print(f"{name}: ERROR -- {error}")
            continue
        loaded.add(dataset.name)
        print("\n".join(describe(dataset, time.perf_counter() - start)))
    if unknown:
        print("error: unknown data-set name (see the ERROR line above)", file=sys.stderr)
        return EXIT_USAGE
    if "mnist" in (name.strip().lower() for name in args.names):
        if "mnist" in loaded:
            return 0
        print("error: MNIST could not be loaded (see the lines above)", file=sys.stderr)
        return EXIT_IO
    if corrupt:
        print("error: a data set is corrupt (see the CORRUPT line above)", file=sys.stderr)
        return EXIT_IO
    return 0


if __name__ == "__main__":
    sys.exit(main())
