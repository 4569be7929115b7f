"""CIFAR-10 and CIFAR-100 from the standard python-format archives (Krizhevsky 2009).

`cifar-10-python.tar.gz` holds `cifar-10-batches-py/data_batch_1..5` and `test_batch`, and
`cifar-100-python.tar.gz` holds `cifar-100-python/train` and `test`: pickled dicts whose
`data` is an `(n, 3072)` uint8 array, each row a 32x32 RGB image channel-major (1024 red, 1024
green, 1024 blue values: the `NCHW` layout of `eqdyn.symbolic.conv_hopfield_energy`), and whose
`labels` (CIFAR-10) or `fine_labels` (CIFAR-100) are the classes. The archive is read in place
(no extraction needed; an extracted folder works too). The pickles are read with an unpickler
that builds dicts, lists, bytes and numpy arrays only, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._errors import DataError
from ._fetch import fetch_first

__all__ = ["CIFAR", "download_cifar", "load_cifar"]

_VAL = 5_000

#: name -> archive, md5 of the archive (as published and used by torchvision), mirrors,
#: folder inside it, train / test members, label key, classes
CIFAR: dict[str, dict] = {
    "cifar10": dict(
        archive="cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
        urls=("https://www.cs.toronto.edu/~kriz/",), folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
        labels=b"labels", n_classes=10),
    "cifar100": dict(
        archive="cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
        urls=("https://www.cs.toronto.edu/~kriz/",), folder="cifar-100-python",
        train=("train",), test=("test",), labels=b"fine_labels", n_classes=100),
}

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _read_batch(raw: bytes, where: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _Unpickler(io.BytesIO(raw), encoding="bytes").load()
        x, y = np.asarray(d[b"data"]), np.asarray(d[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError,
            AttributeError) as e:
        raise DataError(f"{where} is not a CIFAR python batch ({type(e).__name__}: {e}); delete "
                        "it and download it again") from e
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise DataError(f"{where} holds data of shape {x.shape} ({x.dtype}) and {len(y)} labels; "
                        "a CIFAR batch has (n, 3072) uint8 images and n labels: download it again")
    return x, y


def _members(spec: dict, folder: Path, names) -> list[tuple[bytes, str]]:
    """The raw bytes of each batch, from the archive in `folder` or an extracted folder."""
    archive = folder / spec["archive"]
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                out = []
                for n in names:
                    member = f"{spec['folder']}/{n}"
                    f = tar.extractfile(member)
                    if f is None:
                        raise KeyError(member)
                    out.append((f.read(), f"'{archive}' member {member}"))
                return out
        except KeyError as e:
            raise DataError(f"'{archive}' has no member {e}; the archive is not the {spec['archive']}"
                            " of the python version: download it again") from e
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"'{archive}' cannot be read ({e}); delete it and download it "
                            "again") from e
    sub = folder / spec["folder"]
    paths = [sub / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"'{folder}' has neither {spec['archive']} nor the extracted files "
                        f"({', '.join(missing)}); pass --data-dir (`data_dir`) pointing at the "
                        "folder with the archive, or use --download (`download=True`)")
    return [(p.read_bytes(), f"'{p}'") for p in paths]


def load_cifar(name: str, folder: str | os.PathLike[str], val_size: int | None = None):
    """CIFAR-10 or CIFAR-100 from `folder` (the archive, or its extracted folder).

    The first `50,000 - val_size` training images train, the last `val_size` (default 5,000)
    validate, the 10,000 test images test; images are `(n, 3072)` float32 in `[0, 1]`,
    channel-major (`input_shape` `(3, 32, 32)`).
    """
    from ._datasets import Dataset, _check_val_size

    spec = CIFAR[name]
    folder = Path(folder).expanduser()
    parts = {}
    for split in ("train", "test"):
        batches = [_read_batch(raw, where, spec["labels"])
                   for raw, where in _members(spec, folder, spec[split])]
        x = np.concatenate([b[0] for b in batches]).astype(np.float32) / np.float32(255.0)
        y = np.concatenate([b[1] for b in batches])
        bad = (y < 0) | (y >= spec["n_classes"])
        if bad.any():
            raise DataError(f"the {split} labels of {name} in '{folder}' include {y[bad][0]}, "
                            f"outside 0..{spec['n_classes'] - 1}: the files are corrupt")
        parts[split] = (x, y.astype(np.int32))
    x_pool, y_pool = parts["train"]
    n_val = _check_val_size(val_size, _VAL, len(y_pool), f"{name} in '{folder}'")
    cut = len(y_pool) - n_val
    return Dataset(name, x_pool[:cut], y_pool[:cut], x_pool[cut:], y_pool[cut:], *parts["test"],
                   spec["n_classes"], (3, 32, 32))


def download_cifar(name: str, dest: str | os.PathLike[str], *,
                   base_urls: str | Sequence[str] | None = None, md5: bool = True,
                   progress: Callable[[str], object] | None = None) -> Path:
    """Download the python-format archive of `name` into `dest` unless it is there: written to
    a temporary file, its md5 checked against the published one, then renamed into place."""
    spec = CIFAR[name]
    say = progress or (lambda _msg: None)
    dest = Path(dest).expanduser()
    target = dest / spec["archive"]
    if target.is_file() or (dest / spec["folder"]).is_dir():
        say(f"{target if target.is_file() else dest / spec['folder']} already present, "
            "not downloading it")
        return dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"`dest`='{dest}' cannot be created ({e}); pass a writable folder") from e
    urls = spec["urls"] if base_urls is None else (
        [base_urls] if isinstance(base_urls, str) else list(base_urls))

    def verify(tmp: Path, url: str) -> None:
        digest = hashlib.md5()
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if md5 and digest.hexdigest() != spec["md5"]:
            raise DataError(f"md5 of the archive is {digest.hexdigest()}, not the published "
                            f"{spec['md5']}")

    fetch_first(spec["archive"], urls, dest, verify, say)
    return dest
