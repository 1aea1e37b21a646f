"""Tests of graphexec.data: generated, bundled and file datasets (no network, ever)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from graphexec.data import (
    DataError,
    digits,
    load_cifar10_binary,
    load_dataset,
    load_npz,
    spiral,
    split,
)
from graphexec.errors import GraphexecError

# ---------------------------------------------------------------- spiral


def test_spiral_shapes_and_dtypes() -> None:
    X, y = spiral(n_per_class=50, n_classes=4)
    assert X.shape == (200, 2) and X.dtype == np.float64
    assert y.shape == (200,) and y.dtype == np.int64


def test_spiral_class_balance() -> None:
    _, y = spiral(n_per_class=30, n_classes=5)
    assert np.array_equal(np.bincount(y), np.full(5, 30))


def test_spiral_is_deterministic_per_seed() -> None:
    X1, y1 = spiral(seed=3)
    X2, y2 = spiral(seed=3)
    X3, _ = spiral(seed=4)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


def test_spiral_matches_the_cs231n_formula() -> None:
    n, noise = 20, 0.2
    X, _ = spiral(n_per_class=n, n_classes=2, noise=noise, seed=7)
    rng = np.random.default_rng(7)
    for j in range(2):
        r = np.linspace(0.0, 1.0, n)
        t = np.linspace(j * 4.0, (j + 1) * 4.0, n) + rng.standard_normal(n) * noise
        np.testing.assert_allclose(X[j * n : (j + 1) * n], np.c_[r * np.sin(t), r * np.cos(t)])


def test_spiral_without_noise_lies_in_unit_disc() -> None:
    X, _ = spiral(noise=0.0)
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1.0 + 1e-12)


@pytest.mark.parametrize("kwargs", [{"n_per_class": 0}, {"n_classes": 0}, {"noise": -1.0}])
def test_spiral_refuses_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(DataError):
        spiral(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- split


def test_split_is_stratified_complete_and_seeded() -> None:
    X = np.arange(200, dtype=np.float64).reshape(100, 2)
    y = np.repeat(np.arange(4), 25).astype(np.int64)
    Xtr, ytr, Xval, yval = split(X, y, 0.2, seed=1)
    assert len(ytr) == 80 and len(yval) == 20
    assert np.array_equal(np.bincount(yval), [5, 5, 5, 5])
    # every row lands in exactly one part, still paired with its own label
    rows = np.concatenate([Xtr[:, 0], Xval[:, 0]]) / 2
    assert np.array_equal(np.sort(rows), np.arange(100))
    assert np.array_equal(y[(Xtr[:, 0] / 2).astype(int)], ytr)
    again = split(X, y, 0.2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((Xtr, ytr, Xval, yval), again))


def test_split_zero_fraction_gives_empty_validation() -> None:
    X, y = spiral(n_per_class=10)
    Xtr, _, Xval, yval = split(X, y, 0.0, seed=0)
    assert Xtr.shape == (30, 2) and Xval.shape == (0, 2) and yval.shape == (0,)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_refuses_bad_fraction(fraction: float) -> None:
    X, y = spiral(n_per_class=10)
    with pytest.raises(DataError, match="val_fraction"):
        split(X, y, fraction, seed=0)


# ---------------------------------------------------------------- digits


def test_digits_shapes_dtypes_range_and_determinism() -> None:
    pytest.importorskip("sklearn")
    Xtr, ytr, Xval, yval = digits(val_fraction=0.2, seed=0)
    assert Xtr.shape[1] == 64 and Xval.shape[1] == 64
    assert len(Xtr) + len(Xval) == 1797
    assert Xtr.dtype == np.float64 and ytr.dtype == np.int64 and yval.dtype == np.int64
    assert Xtr.min() >= 0.0 and Xtr.max() <= 1.0 and Xtr.max() == 1.0
    assert set(np.unique(yval)) == set(range(10))
    again = digits(val_fraction=0.2, seed=0)
    assert np.array_equal(Xtr, again[0]) and np.array_equal(yval, again[3])


def test_digits_without_sklearn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes "import sklearn..." fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install graphexec\[digits\]"):
        digits()


# ---------------------------------------------------------------- .npz files


def test_npz_round_trip(tmp_path: Path) -> None:
    X = np.random.default_rng(0).standard_normal((6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    path = tmp_path / "set.npz"
    np.savez(path, x=X, y=y)
    X2, y2 = load_npz(path)
    assert np.array_equal(X2, X) and X2.dtype == np.float64
    assert np.array_equal(y2, y) and y2.dtype == np.int64


def test_npz_accepts_capital_x_and_converts_integer_pixels(tmp_path: Path) -> None:
    path = tmp_path / "pix.npz"
    np.savez(path, X=np.array([[0, 255], [7, 9]], dtype=np.uint8), y=np.array([1, 0], np.uint8))
    X, y = load_npz(path)
    assert X.dtype == np.float64 and np.array_equal(X, [[0.0, 255.0], [7.0, 9.0]])
    assert y.dtype == np.int64


def test_npz_refuses_object_array(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([[1, "a"]], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match=r"obj\.npz.*'x'.*pickled object array"):
        load_npz(path)


def test_npz_refuses_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "nolabels.npz"
    np.savez(path, x=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"nolabels\.npz.*no array named 'y'"):
        load_npz(path)
    path = tmp_path / "nox.npz"
    np.savez(path, data=np.zeros((2, 2)), y=np.zeros(2, int))
    with pytest.raises(DataError, match="no array named 'x' or 'X'"):
        load_npz(path)


@pytest.mark.parametrize(
    ("x", "y", "problem"),
    [
        (np.zeros(4), np.zeros(4, int), "2-D"),
        (np.zeros((4, 2)), np.zeros((4, 1), int), "1-D"),
        (np.zeros((4, 2)), np.zeros(3, int), "4 labels"),
        (np.zeros((4, 2)), np.zeros(4), "integer labels"),
        (np.zeros((2, 2)), np.array([0, -1]), "negative"),
        (np.array([[np.nan, 0.0]]), np.array([0]), "NaN"),
        (np.array([["a", "b"]]), np.array([0]), "dtype"),
    ],
)
def test_npz_refuses_wrong_shapes_and_kinds(
    tmp_path: Path, x: np.ndarray, y: np.ndarray, problem: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=y)
    with pytest.raises(DataError, match=problem):
        load_npz(path)


def test_npz_refuses_pickle_garbage_and_missing_file(tmp_path: Path) -> None:
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps({"x": [1]}, protocol=4))
    with pytest.raises(DataError, match="pickled"):
        load_npz(pickled)
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"hello, world")
    with pytest.raises(DataError, match="not an .npz archive"):
        load_npz(garbage)
    with pytest.raises(DataError, match="cannot open"):
        load_npz(tmp_path / "missing.npz")


def test_data_error_is_a_graphexec_error() -> None:
    assert issubclass(DataError, GraphexecError)


# ---------------------------------------------------------------- CIFAR-10 binary


def _cifar_bytes(labels: list[int], seed: int = 0) -> tuple[bytes, np.ndarray]:
    """Records of 1 label byte + 3072 pixel bytes; also return the pixels, shape (n, 3072)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    records = np.concatenate([np.array(labels, np.uint8)[:, None], pixels], axis=1)
    return records.tobytes(), pixels


def test_cifar_reader_on_two_records(tmp_path: Path) -> None:
    raw, pixels = _cifar_bytes([3, 9])
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(raw)
    X, y = load_cifar10_binary(path)
    assert X.shape == (2, 3072) and X.dtype == np.float64
    assert y.dtype == np.int64 and np.array_equal(y, [3, 9])
    assert np.array_equal(X, pixels / 255.0)
    assert X.min() >= 0.0 and X.max() <= 1.0


def test_cifar_reader_concatenates_files_in_order(tmp_path: Path) -> None:
    for i, labels in enumerate(([0, 1], [2])):
        (tmp_path / f"data_batch_{i + 1}.bin").write_bytes(_cifar_bytes(labels, seed=i)[0])
    X, y = load_cifar10_binary([tmp_path / "data_batch_1.bin", tmp_path / "data_batch_2.bin"])
    assert X.shape == (3, 3072) and np.array_equal(y, [0, 1, 2])


def test_cifar_reader_refuses_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(_cifar_bytes([1, 2])[0][:-1])
    with pytest.raises(DataError, match=r"short\.bin.*multiple of the 3073-byte"):
        load_cifar10_binary(path)


def test_cifar_reader_refuses_label_above_nine(tmp_path: Path) -> None:
    path = tmp_path / "labels.bin"
    path.write_bytes(_cifar_bytes([1, 10])[0])
    with pytest.raises(DataError, match="record 1 has label 10"):
        load_cifar10_binary(path)


def test_cifar_reader_refuses_pickled_python_version(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    batch = {b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="download the 'binary version'"):
        load_cifar10_binary(path)


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_spiral_draws_a_fresh_validation_set() -> None:
    Xtr, ytr, Xval, yval = load_dataset("spiral", seed=5)
    assert np.array_equal(Xtr, spiral(seed=5)[0])
    assert np.array_equal(Xval, spiral(seed=6)[0])
    assert Xtr.shape == Xval.shape and np.array_equal(ytr, yval)


def test_load_dataset_npz_and_bin(tmp_path: Path) -> None:
    X, y = spiral(n_per_class=10)
    np.savez(tmp_path / "s.npz", x=X, y=y)
    Xtr, ytr, Xval, yval = load_dataset(str(tmp_path / "s.npz"), val_fraction=0.3)
    assert len(ytr) == 21 and len(yval) == 9
    for i in range(2):
        (tmp_path / f"b{i}.bin").write_bytes(_cifar_bytes(list(range(10)), seed=i)[0])
    Xtr, ytr, Xval, yval = load_dataset(str(tmp_path / "b*.bin"), val_fraction=0.5)
    assert Xtr.shape == (10, 3072) and Xval.shape == (10, 3072)


def test_load_dataset_refuses_unknown_spec() -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
