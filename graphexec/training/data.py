"""Datasets for training graphs: generated, bundled or read from local files. Never downloaded.

Every loader returns plain numpy arrays:

* ``X``: float64, shape (N, D), one example per row;
* ``y``: int64, shape (N,), class labels ``0 .. C-1``.

The four-tuple ``(Xtr, ytr, Xval, yval)`` is a training set and a validation set.
Every random choice goes through an explicit, seeded ``np.random.Generator``, so the same
arguments always give the same arrays.
"""

from __future__ import annotations

import glob
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graphexec.errors import DataError

__all__ = [
    "DataError",
    "digits",
    "load_cifar10_binary",
    "load_dataset",
    "load_npz",
    "spiral",
    "split",
]

PathLike = str | os.PathLike[str]
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

CIFAR_PIXELS = 3 * 32 * 32  # 3072 bytes: 1024 red, then 1024 green, then 1024 blue
CIFAR_RECORD = 1 + CIFAR_PIXELS  # 3073 bytes: one label byte, then the pixels
CIFAR_CLASSES = 10
PICKLE_MAGIC = 0x80  # first byte of any pickle of protocol 2 or newer
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive with files / an empty one



# --------------------------------------------------------------------------- generated data


def spiral(
    n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The CS231n case-study spiral: ``n_classes`` interleaved arms in the plane.

    For class j, with N = ``n_per_class``::

        r = linspace(0, 1, N)                                  # radius grows along the arm
        t = linspace(4 j, 4 (j + 1), N) + noise * randn(N)     # angle, jittered
        X = [r sin t, r cos t]

    The classes are not linearly separable, which makes this the classic first test of a
    small neural network.

    Args:
        n_per_class: Points per class (>= 1).
        n_classes: Number of arms, i.e. classes (>= 1).
        noise: Standard deviation of the angle jitter, in radians (>= 0).
        seed: Seed of the ``np.random.default_rng`` that draws the jitter.

    Returns:
        ``(X, y)``: X float64 of shape (n_classes * n_per_class, 2), y int64 of shape
        (n_classes * n_per_class,), sorted by class (class 0 first).

    Raises:
        DataError: If an argument is out of range.
    """
    if n_per_class < 1 or n_classes < 1:
        raise DataError(
            f"spiral needs n_per_class >= 1 and n_classes >= 1, got {n_per_class} and {n_classes}"
        )
    if not noise >= 0:  # also refuses NaN
        raise DataError(f"spiral needs noise >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    X = np.zeros((n_per_class * n_classes, 2), dtype=np.float64)
    y = np.zeros(n_per_class * n_classes, dtype=np.int64)
    for j in range(n_classes):
        rows = slice(n_per_class * j, n_per_class * (j + 1))
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(j * 4.0, (j + 1) * 4.0, n_per_class)
        t += rng.standard_normal(n_per_class) * noise
        X[rows, 0] = r * np.sin(t)
        X[rows, 1] = r * np.cos(t)
        y[rows] = j
    return X, y


# --------------------------------------------------------------------------- train/val split


def split(X: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> Split:
    """Split a labelled set into a training and a validation part, stratified by class.

    Each class is shuffled on its own and ``round(val_fraction * n_class)`` of its examples go
    to the validation part, so both parts keep the class proportions of the whole set.
    Both parts are then shuffled again, so the classes come mixed.

    Args:
        X: Examples, shape (N, D).
        y: Integer labels, shape (N,).
        val_fraction: Share of each class that goes to validation, in [0, 1).
            0 gives an empty validation set.
        seed: Seed of the ``np.random.default_rng`` that draws the permutations.

    Returns:
        ``(Xtr, ytr, Xval, yval)``: new arrays (copies), with Ntr + Nval == N rows.

    Raises:
        DataError: If ``val_fraction`` is out of range, the lengths differ, or nothing would
            be left for training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(X) != len(y):
        raise DataError(f"X has {len(X)} rows but y has {len(y)} labels")
    rng = np.random.default_rng(seed)
    train_parts, val_parts = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = round(val_fraction * members.size)
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train_idx = rng.permutation(np.concatenate(train_parts)) if train_parts else np.arange(0)
    val_idx = rng.permutation(np.concatenate(val_parts)) if val_parts else np.arange(0)
    if train_idx.size == 0:
        raise DataError(f"val_fraction={val_fraction} leaves no training examples out of {len(y)}")
    return X[train_idx], y[train_idx], X[val_idx], y[val_idx]


# --------------------------------------------------------------------------- bundled data


def digits(val_fraction: float = 0.2, seed: int = 0) -> Split:
    """The 8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes).

    The data ships inside the scikit-learn package, so nothing is downloaded.
    Pixel intensities 0..16 are scaled to [0, 1].

    Args:
        val_fraction: Share of each class held out for validation, in [0, 1).
        seed: Seed of the train/validation split (see :func:`split`).

    Returns:
        ``(Xtr, ytr, Xval, yval)``: X float64 of shape (n, 64), y int64 of shape (n,).

    Raises:
        DataError: If scikit-learn is not installed, or ``val_fraction`` is out of range.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError(
            "the digits dataset needs scikit-learn: pip install graphexec[digits]"
        ) from exc
    images, labels = load_digits(return_X_y=True)
    X = np.asarray(images, dtype=np.float64) / 16.0
    y = np.asarray(labels, dtype=np.int64)
    return split(X, y, val_fraction, seed)


# --------------------------------------------------------------------------- .npz files


def load_npz(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a labelled set saved with ``np.savez(path, x=X, y=y)`` (``X=`` also accepted).

    The file is read with ``allow_pickle=False``: object arrays are refused, never unpickled.

    Args:
        path: An .npz archive holding arrays ``x`` (or ``X``) and ``y``.

    Returns:
        ``(X, y)``: X float64 of shape (N, D) (integer pixel values are converted, not
        rescaled), y int64 of shape (N,) with non-negative labels.

    Raises:
        DataError: If the file is missing or not an .npz archive, holds pickled data, lacks a
            key, or the arrays have the wrong kind, shape or values.
    """
    path = Path(path)
    _require_npz_archive(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            x_key = _pick_x_key(path, archive.files)
            if "y" not in archive.files:
                raise DataError(f"{path}: no array named 'y' (found {sorted(archive.files)})")
            X, y = _read_member(path, archive, x_key), _read_member(path, archive, "y")
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the .npz archive ({exc})") from exc
    return _validated_X(path, X), _validated_y(path, y, n_rows=len(X))


def _require_npz_archive(path: Path) -> None:
    """Refuse a missing file, a pickle or anything else that is not a zip archive."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    if head[:1] == bytes([PICKLE_MAGIC]):
        raise DataError(f"{path}: holds pickled Python data, not an .npz archive of arrays")
    if head not in ZIP_MAGICS:
        raise DataError(f"{path}: not an .npz archive (write one with np.savez(path, x=X, y=y))")


def _pick_x_key(path: Path, keys: list[str]) -> str:
    """Return "x" or "X", whichever the archive has; refuse none or both."""
    found = [k for k in ("x", "X") if k in keys]
    if not found:
        raise DataError(f"{path}: no array named 'x' or 'X' (found {sorted(keys)})")
    if len(found) == 2:
        raise DataError(f"{path}: has both 'x' and 'X'; keep only one")
    return found[0]


def _read_member(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """Read one array of the archive, turning numpy's pickle refusal into a DataError."""
    try:
        return np.asarray(archive[key])
    except ValueError as exc:  # numpy's words for an object array under allow_pickle=False
        raise DataError(
            f"{path}: array '{key}' is a pickled object array; save plain numeric arrays"
        ) from exc


def _validated_X(path: Path, X: np.ndarray) -> np.ndarray:
    """Check X is a non-empty 2-D real array of finite values; return it as float64."""
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"{path}: x must be 2-D (N, D) with N >= 1, got shape {X.shape}")
    if X.dtype.kind not in "fiu":  # float, signed int, unsigned int
        raise DataError(f"{path}: x must hold floats or integer pixels, got dtype {X.dtype}")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise DataError(f"{path}: x holds NaN or infinite values")
    return X


def _validated_y(path: Path, y: np.ndarray, n_rows: int) -> np.ndarray:
    """Check y is a 1-D array of n_rows non-negative integers; return it as int64."""
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise DataError(
            f"{path}: y must be 1-D with {n_rows} labels (one per row of x), got shape {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: y must hold integer labels, got dtype {y.dtype}")
    if (y < 0).any():
        raise DataError(f"{path}: y holds negative labels (smallest {y.min()})")
    return y.astype(np.int64)


# --------------------------------------------------------------------------- CIFAR-10 binary


def load_cifar10_binary(
    paths: PathLike | Sequence[PathLike],
) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 "binary version" batch files (``data_batch_1.bin`` ... ``test_batch.bin``).

    Each file is a run of 3073-byte records: one label byte (0..9), then 3072 pixel bytes
    (the 32x32 red plane, then green, then blue, each row by row). The bytes are read with
    ``np.fromfile``; nothing is unpickled. The "python version" (pickled) files are refused.

    Args:
        paths: One file or a sequence of files; their records are concatenated in order.

    Returns:
        ``(X, y)``: X float64 of shape (N, 3072) scaled from 0..255 to [0, 1],
        y int64 of shape (N,). (A full 50000-image training set takes 1.2 GB as float64.)

    Raises:
        DataError: If no path is given, a file is missing, pickled, not a whole number of
            records, or has a label above 9.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if len(paths) == 0:
        raise DataError("load_cifar10_binary needs at least one file")
    images, labels = [], []
    for path in paths:
        records = _read_cifar_records(Path(path))
        labels.append(records[:, 0].astype(np.int64))
        images.append(records[:, 1:].astype(np.float64) / 255.0)
    return np.concatenate(images), np.concatenate(labels)


def _read_cifar_records(path: Path) -> np.ndarray:
    """Return the file's records as a uint8 array of shape (n, 3073), checked."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    # A valid file starts with a label byte 0..9, so a leading 0x80 can only be a pickle.
    if raw.size > 0 and raw[0] == PICKLE_MAGIC:
        raise DataError(
            f"{path}: this is the pickled 'python version' of CIFAR-10; download the "
            "'binary version' (cifar-10-binary.tar.gz, files data_batch_*.bin) instead"
        )
    if raw.size == 0 or raw.size % CIFAR_RECORD != 0:
        raise DataError(
            f"{path}: size {raw.size} bytes is not a positive multiple of the "
            f"{CIFAR_RECORD}-byte CIFAR-10 record (1 label byte + {CIFAR_PIXELS} pixel bytes)"
        )
    records = raw.reshape(-1, CIFAR_RECORD)
    bad = np.flatnonzero(records[:, 0] >= CIFAR_CLASSES)
    if bad.size > 0:
        raise DataError(
            f"{path}: record {bad[0]} has label {records[bad[0], 0]}, but CIFAR-10 labels are 0..9"
        )
    return records


# --------------------------------------------------------------------------- by name


def load_dataset(spec: str, *, seed: int = 0, val_fraction: float = 0.2) -> Split:
    """Load a dataset named on the command line.

    Accepted specs:

    * ``"spiral"``: training set ``spiral(seed=seed)``, validation set a fresh draw
      ``spiral(seed=seed + 1)`` of the same size (``val_fraction`` is not used);
    * ``"digits"``: scikit-learn's bundled digits, split by ``val_fraction``;
    * ``"path/to/file.npz"``: see :func:`load_npz`, split by ``val_fraction``;
    * ``"path/to/file.bin"``: CIFAR-10 binary, see :func:`load_cifar10_binary`, split by
      ``val_fraction``. A glob pattern such as ``"cifar/data_batch_*.bin"`` reads every
      matching file, in sorted order.

    Args:
        spec: One of the forms above.
        seed: Seed of the generator or of the train/validation split.
        val_fraction: Share of each class held out for validation, in [0, 1).

    Returns:
        ``(Xtr, ytr, Xval, yval)``: X arrays float64 (n, D), y arrays int64 (n,).

    Raises:
        DataError: If the spec is not recognised, or the data cannot be made or read.
    """
    if spec == "spiral":
        Xtr, ytr = spiral(seed=seed)
        Xval, yval = spiral(seed=seed + 1)
        return Xtr, ytr, Xval, yval
    if spec == "digits":
        return digits(val_fraction=val_fraction, seed=seed)
    if spec.endswith(".npz"):
        X, y = load_npz(spec)
        return split(X, y, val_fraction, seed)
    if spec.endswith(".bin"):
        X, y = load_cifar10_binary(_expand_glob(spec))
        return split(X, y, val_fraction, seed)
    raise DataError(
        f"unknown dataset {spec!r}: use 'spiral', 'digits', a .npz file or CIFAR-10 .bin file(s)"
    )


def _expand_glob(spec: str) -> list[str]:
    """Return the files a glob pattern matches (sorted), or ``[spec]`` if it is no pattern."""
    if not any(char in spec for char in "*?["):
        return [spec]
    matches = sorted(glob.glob(spec))
    if not matches:
        raise DataError(f"no file matches {spec!r}")
    return matches
