"""Rebuild datasets/fashion_mnist_subset.npz from the original Fashion-MNIST IDX files.

Usage::

    python datasets/build_fashion_mnist_subset.py [--idx-dir /usr/share/datasets/fashion-mnist]

The IDX files come from the Debian package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``; ``dpkg -L dataset-fashion-mnist`` lists them)
or from https://github.com/zalandoresearch/fashion-mnist. The subset is stratified
(1,200 training and 200 test images of each of the 10 classes) and drawn with a fixed
seed, and the archive is written with fixed timestamps, so the rebuild is byte-identical
and matches SHA256SUMS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyml_course.datasets import (
    DEBIAN_DIR,
    IDX_FILES,
    SUBSET_FILE,
    read_idx,
    sha256_of,
    stratified_indices,
    write_npz_deterministic,
)

TRAIN_PER_CLASS = 1200
TEST_PER_CLASS = 200
SEED = 20201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_DIR)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(SUBSET_FILE))
    args = parser.parse_args()
    arrays = {key: read_idx(args.idx_dir / name) for key, name in IDX_FILES.items()}
    train = stratified_indices(arrays["y_train"], TRAIN_PER_CLASS, seed=SEED)
    test = stratified_indices(arrays["y_test"], TEST_PER_CLASS, seed=SEED + 1)
    write_npz_deterministic(
        args.out,
        {
            "x_train": arrays["x_train"][train],
            "y_train": arrays["y_train"][train].astype("uint8"),
            "x_test": arrays["x_test"][test],
            "y_test": arrays["y_test"][test].astype("uint8"),
        },
    )
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    print(f"{sha256_of(args.out)}  {args.out.name}")


if __name__ == "__main__":
    main()
