"""Data sets: scikit-learn's 8x8 digits, MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 (`_cifar`).

Everything here returns plain numpy arrays (the trainer moves them to JAX). Images are
flattened to `(n, d)` float32 in `[0, 1]`, labels are int32. MNIST-style data sets are read
from the four standard IDX files (gzip-compressed or not) in a local folder, which can be
given explicitly, through the `EQDYN_DATA_DIR` environment variable, or filled by
`download_dataset` from the usual public mirrors (md5-verified, written atomically).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import DataError
from ._cifar import CIFAR, download_cifar, load_cifar
from ._fetch import fetch_first

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
ENV_VAR = "EQDYN_DATA_DIR"

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip
_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# md5 of the *uncompressed* files, in _IDX_FILES order, as the data sets' own pages publish them.
_MD5: dict[str, tuple[str, ...]] = {
    "mnist": ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
              "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
    "fashion-mnist": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                      "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
}  # fmt: skip
_IDX_DTYPES: dict[int, np.dtype] = {
    code: np.dtype(spec)
    for code, spec in [(8, "u1"), (9, "i1"), (11, ">i2"), (12, ">i4"), (13, ">f4"), (14, ">f8")]
}
_DIGITS_TEST, _DIGITS_VAL = 297, 150
_MNIST_VAL = 10_000


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A classification data set split into train / validation / test.

    `x_*` are float32 arrays of shape `(n, input_dim)` with values in `[0, 1]`; `y_*` are
    int32 labels in `0 .. n_classes - 1`. The arrays are validated on construction.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            validate_arrays(split, x, y, n_classes=self.n_classes, input_dim=self.input_dim)

    @property
    def input_dim(self) -> int:
        """Number of input features, the product of `input_shape`."""
        return math.prod(self.input_shape)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, input_shape={tuple(self.input_shape)}, "
            f"n_classes={self.n_classes})"
        )


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise `DataError` if `array` holds NaN or infinite values.

    **Arguments:**

    - `name`: the name to report (e.g. `"x_train"`).
    - `array`: any numeric array.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"`{name}` has {int(bad.sum())} non-finite values (NaN/inf), the first at index {first} "
            f"(value {array[first]}); clean or regenerate the data before training"
        )


def validate_arrays(
    split: str, x: np.ndarray, y: np.ndarray, *, n_classes: int, input_dim: int | None = None
) -> None:
    """Check one split's inputs and labels: shapes, matching counts, label range, finiteness.

    **Arguments:**

    - `split`: the split's name, used in messages as `x_<split>` / `y_<split>`.
    - `x`: inputs of shape `(n, input_dim)`.
    - `y`: integer labels of shape `(n,)` in `0 .. n_classes - 1`.
    - `n_classes`: number of classes.
    - `input_dim`: the expected number of features, or `None` not to check it.
    """
    x, y = np.asarray(x), np.asarray(y)
    xn, yn = f"x_{split}", f"y_{split}"
    if x.ndim != 2 or (input_dim is not None and x.shape[1] != input_dim):
        raise DataError(
            f"`{xn}` has shape {x.shape}; expected (n, {input_dim if input_dim is not None else 'd'}): "
            "flatten the images to one row per example"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"`{yn}` has shape {y.shape} and dtype {y.dtype}; pass integer labels of shape (n,)"
        )
    if len(x) != len(y):
        raise DataError(
            f"`{xn}` has {len(x)} rows but `{yn}` has {len(y)} labels; pass one label per example"
        )
    _check_labels(f"`{yn}`", y, n_classes)
    check_finite(xn, x)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    **Arguments:**

    - `path`: the file. Compression is detected from the `.gz` suffix or the gzip magic bytes.

    **Returns:**

    An array of the dimensions stored in the header, in native byte order.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"`path`='{path}' cannot be read ({e.strerror or e}); check the path and its permissions"
        ) from e
    return _parse_idx(_gunzip(raw, f"`path`='{path}'", path.suffix == ".gz"), f"`path`='{path}'")


def _gunzip(raw: bytes, where: str, gz_suffix: bool) -> bytes:
    if not (gz_suffix or raw[:2] == b"\x1f\x8b"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{where} is not a valid gzip file ({e}); it is probably corrupt or incompletely "
            "downloaded: delete it and download it again"
        ) from e


def _parse_idx(data: bytes, where: str) -> np.ndarray:
    if len(data) < 4:
        raise DataError(
            f"{where} has only {len(data)} bytes, too short for an IDX header (4 bytes of magic "
            "number and 4 per dimension); pass an IDX file such as train-images-idx3-ubyte.gz"
        )
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[3] == 0:
        raise DataError(
            f"{where} has magic number 0x{magic:08X}, which is not an IDX header "
            "(0x000008NN for unsigned bytes in NN dimensions); pass an IDX file such as "
            "train-images-idx3-ubyte.gz"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({d.name})" for c, d in _IDX_DTYPES.items())
        raise DataError(
            f"{where} has IDX type code 0x{code:02X} (magic 0x{magic:08X}); supported codes are "
            f"{known}: the file is corrupt or not an IDX file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{where} is truncated: its {ndim}-dimensional IDX header needs {header} bytes but the "
            f"(uncompressed) file has {len(data)}; delete it and download it again"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected, actual = math.prod(dims) * dtype.itemsize, len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise DataError(
            f"{where} is {what}: its header declares shape {dims}, i.e. {expected} data bytes, but the "
            f"(uncompressed) file holds {actual} data bytes; delete it and download it again"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _check_labels(where: str, y: np.ndarray, n_classes: int) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise DataError(
            f"{where} has labels outside 0..{n_classes - 1} (min {int(y.min())}, max {int(y.max())}); "
            "the labels are corrupt or belong to another data set: re-download or regenerate them"
        )


def _check_name(name: object) -> str:
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    if key not in DATASETS:
        raise DataError(f"`name`={name!r} is not a known data set; use one of {', '.join(DATASETS)}")
    return key


def default_data_dir(name: str) -> Path:
    """The folder `load_dataset(download=True)` uses when no `data_dir` is given.

    **Arguments:**

    - `name`: a data set name from `DATASETS`.

    **Returns:**

    `~/.cache/eqdyn/<name>`.
    """
    return Path.home() / ".cache" / "eqdyn" / _check_name(name)


def _fix_hint(name: str) -> str:
    files = "python-format archive" if name.startswith("cifar") else "four IDX .gz files"
    return (
        f"pass --data-dir (`data_dir`) pointing at a folder with the {name} {files}, "
        f"set {ENV_VAR}, or use --download (`download=True`)"
    )


def _find_files(folder: Path) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for stem in _IDX_FILES:
        found[stem] = next((folder / f for f in (stem + ".gz", stem) if (folder / f).is_file()), None)
    return found


def _locate(base: Path, name: str) -> Path:
    """`base` itself if it holds the files, else `base/<name>` for the parent layout."""
    if base.is_dir() and any(_find_files(base).values()):
        return base
    if any((base / d).is_dir() for d in DATASETS):
        return base / name
    return base


def download_dataset(
    name: str,
    dest: str | os.PathLike[str],
    *,
    base_urls: str | Sequence[str] | None = None,
    md5: bool = True,
    progress: Callable[[str], object] | None = None,
) -> Path:
    """Download the four IDX .gz files of `name` into `dest`, skipping those already there.

    Mirrors are tried in turn; each file is written to a temporary file in `dest`, checked
    (gzip, IDX header, md5 of the uncompressed content) and only then renamed into place, so
    a failed download never leaves a partial file behind.

    **Arguments:**

    - `name`: `"mnist"` or `"fashion-mnist"`.
    - `dest`: the folder to fill (created if needed).
    - `base_urls`: mirror base URL(s), tried in order (the file name is appended to each);
      `None` uses the usual public mirrors.
    - `md5`: verify the published md5 of each file (turn off only for private test mirrors).
    - `progress`: optional callable receiving one-line status messages (e.g. `print`).

    **Returns:**

    The folder, as a `Path`.
    """
    name = _check_name(name)
    if name in CIFAR:
        return download_cifar(name, dest, base_urls=base_urls, md5=md5, progress=progress)
    if name not in _MIRRORS:
        raise DataError(
            f"`name`={name!r} is bundled with scikit-learn and needs no download; "
            f"use one of {', '.join(_MIRRORS)}"
        )
    if base_urls is None:
        urls = list(_MIRRORS[name])
    else:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise DataError(
            f"`base_urls`={base_urls!r} must be a non-empty list of URL strings, "
            "or None for the public mirrors"
        )
    if progress is not None and not callable(progress):
        raise DataError(f"`progress`={progress!r} is not callable; pass a function such as print")
    say = progress or (lambda _msg: None)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise DataError(f"`dest`='{dest}' exists but is not a folder; pass a folder to download into")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"`dest`='{dest}' cannot be created ({e.strerror or e}); pass a writable folder"
        ) from e
    for (stem, path), digest in zip(_find_files(dest).items(), _MD5[name]):
        if path is None:
            _fetch(stem + ".gz", urls, dest, digest if md5 else None, say)
        else:
            say(f"{path} already present, not downloading it")
    return dest


def _fetch(
    fname: str, urls: list[str], dest: Path, digest: str | None, say: Callable[[str], object]
) -> None:
    def verify(tmp: Path, url: str) -> None:
        where = f"the file downloaded from {url}"
        data = _gunzip(tmp.read_bytes(), where, True)
        _parse_idx(data, where)
        got = hashlib.md5(data).hexdigest()
        if digest is not None and got != digest:
            raise DataError(f"md5 of the uncompressed content is {got}, not the published {digest}")

    fetch_first(fname, urls, dest, verify, say)


def _check_val_size(val_size: object, default: int, pool: int, what: str) -> int:
    v = default if val_size is None else val_size
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < pool:
        shown = f"{val_size!r}" if val_size is not None else f"None (the default, {default})"
        raise DataError(
            f"`val_size`={shown} is out of range: it must be an integer from 0 to {pool - 1} "
            f"({what} holds {pool} examples and at least one must stay in train); pass a value in range"
        )
    return int(v)


def _load_digits(val_size: object) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int32)
    n_val = _check_val_size(val_size, _DIGITS_VAL, len(y) - _DIGITS_TEST, "digits minus the test set")
    perm = np.random.default_rng(0).permutation(len(y))  # fixed: never the training seed
    test, val, train = np.split(perm, [_DIGITS_TEST, _DIGITS_TEST + n_val])
    return Dataset("digits", x[train], y[train], x[val], y[val], x[test], y[test], 10, (8, 8))


def _resolve_folder(
    name: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[Path, str]:
    """The folder holding `name`'s files, and a description of where it came from."""
    env = os.environ.get(ENV_VAR)
    if data_dir is not None:
        base, arg = Path(data_dir).expanduser(), f"`data_dir`='{data_dir}'"
    elif env:
        base, arg = Path(env).expanduser(), f"{ENV_VAR}='{env}'"
    else:
        base = default_data_dir(name)
        arg = f"`data_dir`=None ({ENV_VAR} unset, so the default '{base}')"
    if not download and not base.exists():
        raise DataError(f"{arg} does not exist; {_fix_hint(name)}")
    if not download and not base.is_dir():
        raise DataError(f"{arg} is not a folder; {_fix_hint(name)}")
    folder = _locate(base, name)
    return folder, (arg if folder == base else f"{arg} (subfolder '{folder}')")


def _read_pair(name: str, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim == 1 and labels.ndim == 3:
        raise DataError(
            f"`path`='{images_path}' holds 1-d data (labels?) and '{labels_path}' holds "
            f"{labels.shape[1:]} arrays (images?): the image and label files look swapped; "
            "give each its own name"
        )
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"`path`='{images_path}' holds {images.dtype} images of shape {images.shape[1:]}; "
            f"{name} needs uint8 images of shape (28, 28): the file is corrupt or from another data set"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"`path`='{labels_path}' holds {labels.dtype} data of shape {labels.shape}, not 1-d "
            "integer labels: the file is corrupt or from another data set"
        )
    if len(images) != len(labels):
        raise DataError(
            f"`path`='{images_path}' has {len(images)} images but '{labels_path.name}' has "
            f"{len(labels)} labels; the files are truncated or from different releases: download both"
        )
    _check_labels(f"`path`='{labels_path}'", labels, 10)
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
    return x, labels.astype(np.int32)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    val_size: int | None = None,
    seed: int = 0,
    base_url: str | Sequence[str] | None = None,
    progress: Callable[[str], object] | None = None,
) -> Dataset:
    """Load a data set, split into train / validation / test.

    - `"digits"`: scikit-learn's bundled 8x8 digits (1797 images, pixels / 16); a fixed
      permutation (numpy seed 0) puts 297 in test, `val_size` (default 150) in validation,
      the rest (1350) in train.
    - `"mnist"`, `"fashion-mnist"`: the four IDX files; the first 50,000 training images
      train, the last `val_size` (default 10,000) validate, the 10,000 t10k images test.
    - `"cifar10"`, `"cifar100"`: the python-format archive (or its extracted folder); the
      last `val_size` (default 5,000) of the 50,000 training images validate, 10,000 test
      (images `(3, 32, 32)` channel-major, flattened; see `eqdyn.data._cifar`).

    The folder is `data_dir`, else `$EQDYN_DATA_DIR`, else `default_data_dir(name)`; each may
    hold the files directly or be a parent with `mnist/` and `fashion-mnist/` subfolders.

    **Arguments:**

    - `name`: one of `DATASETS`.
    - `data_dir`: the folder with the IDX files (ignored for digits).
    - `download`: fetch missing files with `download_dataset` (md5-verified).
    - `val_size`: size of the validation split; `0` gives an empty one.
    - `seed`: accepted so callers can pass their training seed unchanged; the splits are fixed
      and never depend on it.
    - `base_url`: mirror URL(s) for `download`; `None` uses the public mirrors.
    - `progress`: optional callable receiving status messages (e.g. `print`).

    **Returns:**

    A validated `Dataset`.
    """
    name = _check_name(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"`seed`={seed!r} must be an integer")
    if name == "digits":
        return _load_digits(val_size)
    folder, where = _resolve_folder(name, data_dir, download)
    if name in CIFAR:
        if download:
            download_cifar(name, folder, base_urls=base_url, progress=progress)
        return load_cifar(name, folder, val_size)
    if download:
        download_dataset(name, folder, base_urls=base_url, progress=progress)
    files = _find_files(folder)
    missing = [stem + ".gz" for stem, path in files.items() if path is None]
    if missing:
        raise DataError(
            f"{where} has no file {', '.join(missing)} (nor the uncompressed names without .gz); "
            + _fix_hint(name)
        )
    x_pool, y_pool = _read_pair(name, files[_IDX_FILES[0]], files[_IDX_FILES[1]])
    x_test, y_test = _read_pair(name, files[_IDX_FILES[2]], files[_IDX_FILES[3]])
    n_val = _check_val_size(val_size, _MNIST_VAL, len(y_pool), f"'{files[_IDX_FILES[0]]}'")
    cut = len(y_pool) - n_val
    return Dataset(
        name, x_pool[:cut], y_pool[:cut], x_pool[cut:], y_pool[cut:], x_test, y_test, 10, (28, 28)
    )
