"""Course datasets: the shipped Fashion-MNIST subset and the loaders around it.

Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, Zalando Research, MIT licence) is the
default data of notebooks 00-05. The repository ships a stratified subset
(``datasets/fashion_mnist_subset.npz``, checksum in ``datasets/SHA256SUMS``) so the
course runs with no network. :func:`load_fashion_mnist` looks, in order, at:

1. the shipped subset (verified against its SHA-256);
2. the full set from the Debian package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``);
3. the Keras cache (``~/.keras/datasets/fashion-mnist``);
4. only when ``allow_download=True``: a Keras download (needs the network).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml_course.paths import repo_root

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

SUBSET_FILE = "fashion_mnist_subset.npz"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path.home() / ".keras" / "datasets" / "fashion-mnist"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_SOURCES = ("auto", "subset", "debian", "keras-cache", "download")


class DataError(RuntimeError):
    """A data file is missing or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class ImageDataset:
    """Images as uint8 ``(N, 28, 28)`` arrays and integer labels, with where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...] = CLASS_NAMES

    def __repr__(self) -> str:
        return (
            f"ImageDataset(train={len(self.x_train):,}, test={len(self.x_test):,}, "
            f"shape={self.x_train.shape[1:]}, source={self.source!r})"
        )


def datasets_dir() -> Path:
    """The shipped ``datasets/`` folder (``$TINYML_COURSE_DATA`` overrides it)."""
    env = os.environ.get("TINYML_COURSE_DATA")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if root is None:
        raise DataError(
            "Cannot find the course's datasets/ folder: tinyml_course is not installed from a "
            "clone of the course. Install it with `pip install -e .` from the clone, or set "
            "TINYML_COURSE_DATA to the folder that holds fashion_mnist_subset.npz."
        )
    return root / "datasets"


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_checksums(folder: Path | None = None) -> dict[str, str]:
    """The ``SHA256SUMS`` entries of the datasets folder, by file name."""
    sums = (folder or datasets_dir()) / "SHA256SUMS"
    if not sums.is_file():
        return {}
    entries = {}
    for line in sums.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = digest
    return entries


def verify_file(path: Path) -> None:
    """Check a shipped file against ``SHA256SUMS``.

    Raises
    ------
    DataError
        If the file is missing, has no recorded checksum, or its checksum differs.
    """
    if not path.is_file():
        raise DataError(
            f"{path} is missing. Restore it with `git checkout -- {path.name}` in "
            f"{path.parent}, or rebuild it with `python datasets/build_fashion_mnist_subset.py` "
            "(needs the Debian package dataset-fashion-mnist or the original IDX files)."
        )
    expected = expected_checksums(path.parent).get(path.name)
    if expected is None:
        raise DataError(f"No checksum for {path.name} in {path.parent / 'SHA256SUMS'}.")
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path} is corrupt (SHA-256 {actual[:12]}... but SHA256SUMS says {expected[:12]}...). "
            f"Restore it with `git checkout -- datasets/{path.name}` or rebuild it with "
            "`python datasets/build_fashion_mnist_subset.py`."
        )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of the original MNIST files."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file; re-download or reinstall it.")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(
            f"{path} is truncated: expected {np.prod(shape)} values, found {array.size}."
        )
    return array.reshape(shape)


def _load_idx_dir(folder: Path, source: str) -> ImageDataset:
    arrays = {key: read_idx(folder / name) for key, name in IDX_FILES.items()}
    return ImageDataset(
        source=source,
        **{k: v.astype(np.int64) if k.startswith("y") else v for k, v in arrays.items()},
    )


def _has_idx(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IDX_FILES.values())


def load_subset(path: Path | None = None) -> ImageDataset:
    """Load the shipped, checksum-verified subset."""
    path = path or datasets_dir() / SUBSET_FILE
    verify_file(path)
    with np.load(path) as data:
        return ImageDataset(
            x_train=data["x_train"],
            y_train=data["y_train"].astype(np.int64),
            x_test=data["x_test"],
            y_test=data["y_test"].astype(np.int64),
            source=f"shipped subset ({path.name})",
        )


def load_fashion_mnist(source: str = "auto", *, allow_download: bool = False) -> ImageDataset:
    """Load Fashion-MNIST without the network.

    Parameters
    ----------
    source : {"auto", "subset", "debian", "keras-cache", "download"}
        ``"auto"`` takes the first available in the documented order (the shipped subset
        first). The others force one place.
    allow_download : bool
        Allow ``"auto"`` to fall back to a Keras download when nothing local exists.

    Returns
    -------
    ImageDataset
        uint8 images ``(N, 28, 28)``, int64 labels, and ``source`` saying where they came from.

    Raises
    ------
    ValueError
        For an unknown ``source``.
    DataError
        When the requested data is missing or corrupt, with the command that fixes it.

    Examples
    --------
    >>> data = load_fashion_mnist()  # doctest: +SKIP
    >>> data.x_train.shape  # doctest: +SKIP
    (12000, 28, 28)
    """
    if source not in _SOURCES:
        raise ValueError(f"source={source!r} is not one of {_SOURCES}.")
    if source == "subset":
        return load_subset()
    if source == "debian":
        if not _has_idx(DEBIAN_DIR):
            raise DataError(
                f"The Debian Fashion-MNIST files are not in {DEBIAN_DIR}. Install them with "
                "`sudo apt-get install dataset-fashion-mnist`, or use source='subset'."
            )
        return _load_idx_dir(DEBIAN_DIR, "debian package dataset-fashion-mnist")
    if source == "keras-cache":
        if not _has_idx(KERAS_CACHE_DIR):
            raise DataError(f"No Fashion-MNIST in the Keras cache ({KERAS_CACHE_DIR}).")
        return _load_idx_dir(KERAS_CACHE_DIR, "keras cache")
    if source == "download":
        return _download()

    problems = []
    try:
        return load_subset()
    except DataError as err:
        problems.append(str(err))
    for folder, name in (
        (DEBIAN_DIR, "debian package dataset-fashion-mnist"),
        (KERAS_CACHE_DIR, "keras cache"),
    ):
        if _has_idx(folder):
            return _load_idx_dir(folder, name)
    if allow_download:
        return _download()
    raise DataError(
        "No Fashion-MNIST data found. " + " ".join(problems) + " Alternatively install the "
        "full set with `sudo apt-get install dataset-fashion-mnist`, or, when online, call "
        "load_fashion_mnist(allow_download=True)."
    )


def _download() -> ImageDataset:  # pragma: no cover - needs the network
    from tinyml_course._setup import get_keras

    keras = get_keras()
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as err:
        raise DataError(
            f"Downloading Fashion-MNIST failed ({err}). The course does not need the network: "
            "use the shipped subset (load_fashion_mnist())."
        ) from None
    return ImageDataset(
        x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), "keras download"
    )


def stratified_indices(labels: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` samples of every class, shuffled with a fixed seed."""
    rng = np.random.default_rng(seed)
    picks = []
    for cls in np.unique(labels):
        candidates = np.flatnonzero(labels == cls)
        if len(candidates) < per_class:
            raise ValueError(
                f"class {cls} has only {len(candidates)} samples, asked for {per_class}."
            )
        picks.append(rng.choice(candidates, size=per_class, replace=False))
    order = np.concatenate(picks)
    rng.shuffle(order)
    return order


def write_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed ``.npz`` byte-for-byte reproducibly (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` images to float32 ``(N, H, W, 1)`` in [0, 1], the course's model input."""
    images = np.asarray(images)
    if images.ndim not in (2, 3, 4):
        raise ValueError(
            f"images must be (H, W), (N, H, W) or (N, H, W, 1); got shape {images.shape}."
        )
    if images.ndim == 2:
        images = images[None]
    if images.ndim == 3:
        images = images[..., None]
    scale = 255.0 if images.dtype == np.uint8 or images.max(initial=0) > 1.0 else 1.0
    return images.astype(np.float32) / scale


def take(
    x: np.ndarray, y: np.ndarray, n: int | None, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded sample of ``n`` items (all of them when ``n`` is None)."""
    if n is None or n >= len(x):
        return x, y
    classes = np.unique(y)
    idx = stratified_indices(y, max(1, n // len(classes)), seed=seed)
    return x[idx], y[idx]


__all__: Sequence[str] = (
    "CLASS_NAMES",
    "DataError",
    "ImageDataset",
    "load_fashion_mnist",
    "load_subset",
    "read_idx",
    "stratified_indices",
    "to_model_input",
    "take",
    "verify_file",
    "write_npz_deterministic",
)
