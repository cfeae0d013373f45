"""Load a user's own photos laid out as ``DIR/with_mask/*`` and ``DIR/without_mask/*``.

That is the layout of the common public face-mask datasets, so one of those (or a folder
of your own webcam shots) plugs straight into notebook 06 and ``tinyml-course mask classify``.
Any format OpenCV reads (JPEG, PNG, BMP, TIFF, WebP, ...) and any size works; files that
cannot be read are reported and skipped, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CLASS_FOLDERS = {"without_mask": 0, "with_mask": 1}
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".jp2"}
)


class FolderLayoutError(ValueError):
    """The folder is missing, empty or not laid out as ``with_mask/`` and ``without_mask/``."""


@dataclass(frozen=True)
class FolderImages:
    """Images loaded from a ``with_mask`` / ``without_mask`` folder.

    Attributes
    ----------
    images : list of np.ndarray
        uint8 RGB images ``(H, W, 3)``, each at its own size.
    labels : np.ndarray
        int64: 1 for ``with_mask``, 0 for ``without_mask``.
    paths : list of Path
        Where each image came from.
    skipped : list of (Path, str)
        Files that could not be read, with the reason.
    """

    images: list[np.ndarray]
    labels: np.ndarray
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as uint8 RGB ``(H, W, 3)`` (grayscale and RGBA are converted).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If OpenCV cannot decode it (not an image, or a truncated or unsupported file).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}.")
    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode copes with any path
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(
            f"{path.name}: OpenCV cannot decode it (not an image, truncated, or an unsupported format)."
        )
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = (
            (image / max(1, np.iinfo(image.dtype).max / 255)).round().astype(np.uint8)
            if np.issubdtype(image.dtype, np.integer)
            else np.clip(image * 255, 0, 255).astype(np.uint8)
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_mask_folder(folder: str | Path, *, limit: int | None = None) -> FolderImages:
    """Load ``folder/with_mask/*`` (label 1) and ``folder/without_mask/*`` (label 0).

    Parameters
    ----------
    folder : str or Path
        The dataset root holding the two class folders (names are case-insensitive;
        ``mask`` / ``no_mask`` are not guessed: rename them).
    limit : int, optional
        Read at most this many images per class (sorted by file name).

    Returns
    -------
    FolderImages
        The readable images, their labels and paths, and the skipped files with reasons.

    Raises
    ------
    FolderLayoutError
        If the folder does not exist, lacks either class folder, or holds no readable image.

    Examples
    --------
    >>> data = load_mask_folder("my_faces")  # doctest: +SKIP
    >>> len(data), data.skipped  # doctest: +SKIP
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FolderLayoutError(
            f"folder={str(root)!r} is not a directory; pass the folder that holds with_mask/ and without_mask/."
        )
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"limit must be a positive number of images per class; got {limit!r}.")
    found = {child.name.lower(): child for child in root.iterdir() if child.is_dir()}
    missing = [name for name in CLASS_FOLDERS if name not in found]
    if missing:
        present = sorted(child.name for child in root.iterdir() if child.is_dir())
        raise FolderLayoutError(
            f"{root} has no {' or '.join(m + '/' for m in missing)} folder (found {present or 'no folders'}). "
            "Lay the photos out as with_mask/*.jpg and without_mask/*.jpg."
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    paths: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for name, label in CLASS_FOLDERS.items():
        files = sorted(
            p for p in found[name].iterdir() if p.is_file() and not p.name.startswith(".")
        )
        count = 0
        for path in files:
            if limit is not None and count >= int(limit):
                break
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((path, f"not an image file type ({path.suffix or 'no extension'})"))
                continue
            try:
                image = read_image(path)
            except (OSError, ValueError) as err:
                skipped.append((path, str(err)))
                continue
            images.append(image)
            labels.append(label)
            paths.append(path)
            count += 1
        if count == 0:
            raise FolderLayoutError(
                f"{found[name]} holds no readable image ({len(files)} files, "
                f"{sum(1 for p, _ in skipped if p.parent == found[name])} unreadable). "
                f"Put JPEG or PNG photos of faces {'with' if label else 'without'} masks in it."
            )
    return FolderImages(images, np.array(labels, np.int64), paths, skipped)


def report_skipped(data: FolderImages) -> str:
    """One line per skipped file (empty string when none), for printing."""
    return "\n".join(f"skipped {path}: {reason}" for path, reason in data.skipped)
