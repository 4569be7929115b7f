"""Tests of eqdyn.data: IDX parsing, MNIST-style loading, downloading, digits and real data."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, write_idx

from eqdyn._errors import DataError
from eqdyn.data import (
    DATASETS,
    Dataset,
    check_finite,
    default_data_dir,
    download_dataset,
    load_dataset,
    read_idx,
    validate_arrays,
)
from eqdyn.data import _datasets

FILES = _datasets._IDX_FILES
N_TRAIN, N_TEST = 100, 20


# ----------------------------------------------------------------------------- fixtures


def _small_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        FILES[0]: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        FILES[1]: (np.arange(N_TRAIN) % 10).astype(np.uint8),
        FILES[2]: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        FILES[3]: (np.arange(N_TEST)[::-1] % 10).astype(np.uint8),
    }


def _write_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / (stem + ".gz" if gz else stem), array, gz=gz)
    return folder


@pytest.fixture
def small() -> dict[str, np.ndarray]:
    return _small_arrays()


@pytest.fixture
def small_dir(tmp_path: Path, small: dict[str, np.ndarray]) -> Path:
    return _write_set(tmp_path / "mnist", small)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EQDYN_DATA_DIR", raising=False)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder; /truncated/* promises 5000 bytes and sends 10."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + b"\0" * 8)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, small: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch):
    """A local HTTP server whose /mirror/ holds the small .gz files; yields its base URL."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    _write_set(root / "mirror", small)
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _patch_md5(monkeypatch: pytest.MonkeyPatch, arrays: dict[str, np.ndarray]) -> None:
    """Make the small files' md5 the 'published' ones, to exercise verification end to end."""
    digests = []
    for stem, a in arrays.items():
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
        digests.append(hashlib.md5(header + a.tobytes()).hexdigest())
    monkeypatch.setitem(_datasets._MD5, "mnist", tuple(digests))


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([5, 0, 4, 1, 9], dtype=np.uint8),
        np.array([[-3, 7], [1 << 20, -(1 << 30)]], dtype=np.int32),
        np.array([0.5, -1.25, 3.0], dtype=np.float32),
        np.array([[1e300, -2.5]], dtype=np.float64),
        np.array([-7, 300], dtype=np.int16),
        np.array([-7, 100], dtype=np.int8),
    ],
    ids=["u8-3d", "u8-1d", "i32", "f32", "f64", "i16", "i8"],
)
def test_read_idx_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array, gz=gz)
    out = read_idx(path)
    assert out.dtype == array.dtype.newbyteorder("=")
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # writable, not a view of the file's bytes


def test_read_idx_detects_gzip_without_suffix(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "labels", array, gz=True)), array)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_truncated(tmp_path: Path, gz: bool) -> None:
    path = write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8), gz=False)
    payload = path.read_bytes()[:-100]
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(DataError, match=r"(?s)truncated.*\(3, 28, 28\).*2352 data bytes.*2252 data bytes"):
        read_idx(path)
    with pytest.raises(DataError, match=str(path)):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, np.zeros(4, np.uint8), gz=False)
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(DataError, match="longer than its header says.*4 data bytes.*6 data bytes"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))
    with pytest.raises(DataError, match="truncated.*header needs 16 bytes.*has 8"):
        read_idx(path)


@pytest.mark.parametrize("payload", [b"\x01\x02\x08\x03" + b"\0" * 12, b"\0\0\x08\x00"])
def test_read_idx_bad_magic(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x"
    path.write_bytes(payload)
    magic = payload[:4].hex().upper()
    with pytest.raises(DataError, match=rf"`path`=.*x' has magic number 0x{magic}, which is not an IDX"):
        read_idx(path)


@pytest.mark.parametrize("payload", [b"ab", b""])
def test_read_idx_too_short(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=rf"has only {len(payload)} bytes, too short for an IDX header"):
        read_idx(path)


def test_read_idx_unsupported_type_code(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError, match=r"type code 0x0A.*supported codes are 0x08 \(uint8\)"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match=r"garbage\.gz.*not a valid gzip file"):
        read_idx(garbage)
    cut = tmp_path / "cut.gz"
    write_idx(cut, np.arange(5000, dtype=np.int32))
    cut.write_bytes(cut.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"cut\.gz.*not a valid gzip file.*download it again"):
        read_idx(cut)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"`path`=.*nope.*cannot be read"):
        read_idx(tmp_path / "nope.gz")


# ----------------------------------------------------------------------------- load_dataset (small files)


def test_load_small_mnist(small_dir: Path, small: dict[str, np.ndarray]) -> None:
    ds = load_dataset("mnist", small_dir, val_size=20)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (80, 20, 20)
    assert ds.x_train.shape == (80, 784) and ds.x_test.shape == (20, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.input_shape == (28, 28) and ds.input_dim == 784 and ds.n_classes == 10
    images = small[FILES[0]].reshape(N_TRAIN, -1) / np.float32(255)
    np.testing.assert_array_equal(ds.x_train, images[:80])  # first part trains ...
    np.testing.assert_array_equal(ds.x_val, images[80:])  # ... the last val_size validate
    np.testing.assert_array_equal(ds.y_val, small[FILES[1]][80:])
    np.testing.assert_array_equal(ds.x_test, small[FILES[2]].reshape(N_TEST, -1) / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, small[FILES[3]])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.x_train.max() == 1.0  # 255 maps to exactly 1
    assert repr(ds) == (
        "Dataset(name='mnist', train=80, val=20, test=20, input_shape=(28, 28), n_classes=10)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]
    assert load_dataset("mnist", small_dir, val_size=0).x_val.shape == (0, 784)


def test_load_uncompressed_names(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    folder = _write_set(tmp_path / "raw", small, gz=False)
    ds = load_dataset("fashion-mnist", folder, val_size=10)
    assert ds.name == "fashion-mnist" and len(ds.y_train) == 90
    assert load_dataset("Fashion_MNIST", str(folder), val_size=10).name == "fashion-mnist"


def test_default_val_size_too_large_for_small_files(small_dir: Path) -> None:
    with pytest.raises(DataError, match=r"`val_size`=None \(the default, 10000\).*0 to 99"):
        load_dataset("mnist", small_dir)


@pytest.mark.parametrize("val_size", [-1, 100, 1000, 2.5, True, "10"])
def test_val_size_out_of_range(small_dir: Path, val_size: object) -> None:
    with pytest.raises(DataError, match=r"`val_size`=.*integer from 0 to 99"):
        load_dataset("mnist", small_dir, val_size=val_size)


def test_unknown_name() -> None:
    with pytest.raises(DataError, match=r"`name`='svhn'.*digits, mnist, fashion-mnist, cifar10"):
        load_dataset("svhn")
    with pytest.raises(DataError, match=r"`name`=None"):
        load_dataset(None)  # type: ignore[arg-type]
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")


def test_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"`data_dir`=.*nowhere.*does not exist.*EQDYN_DATA_DIR.*--download"):
        load_dataset("mnist", missing)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DataError, match=r"`data_dir`=.*afile.*is not a folder"):
        load_dataset("mnist", afile)


def test_missing_files(small_dir: Path) -> None:
    (small_dir / (FILES[1] + ".gz")).unlink()
    (small_dir / (FILES[3] + ".gz")).unlink()
    expected = (
        r"`data_dir`=.* has no file train-labels-idx1-ubyte\.gz, t10k-labels-idx1-ubyte\.gz"
        r".*--data-dir.*EQDYN_DATA_DIR.*--download"
    )
    with pytest.raises(DataError, match=expected):
        load_dataset("mnist", small_dir, val_size=10)


def test_no_dir_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir("mnist") == tmp_path / ".cache" / "eqdyn" / "mnist"
    with pytest.raises(DataError, match=r"`data_dir`=None \(EQDYN_DATA_DIR unset.*does not exist"):
        load_dataset("mnist")


def test_count_mismatch(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    small[FILES[1]] = small[FILES[1]][:-1]
    folder = _write_set(tmp_path / "m", small)
    with pytest.raises(DataError, match=r"has 100 images but 'train-labels-idx1-ubyte\.gz' has 99 labels"):
        load_dataset("mnist", folder, val_size=10)


def test_labels_out_of_range(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    small[FILES[3]][5] = 10
    folder = _write_set(tmp_path / "m", small)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*outside 0\.\.9 \(min 0, max 10\)"):
        load_dataset("mnist", folder, val_size=10)


def test_wrong_image_shape(tmp_path: Path, small: dict[str, np.ndarray]) -> None:
    small[FILES[2]] = np.zeros((N_TEST, 27, 27), np.uint8)
    folder = _write_set(tmp_path / "m", small)
    with pytest.raises(DataError, match=r"t10k-images.*shape \(27, 27\).*needs uint8 images of shape \(28, 28\)"):
        load_dataset("mnist", folder, val_size=10)


def test_env_var_folder_and_parent(
    tmp_path: Path, small: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_set(tmp_path / "parent" / "mnist", small)
    _write_set(tmp_path / "parent" / "fashion-mnist", _small_arrays(seed=1))
    for env in (tmp_path / "parent" / "mnist", tmp_path / "parent"):  # the folder itself, a parent
        monkeypatch.setenv("EQDYN_DATA_DIR", str(env))
        ds = load_dataset("mnist", val_size=10)
        np.testing.assert_array_equal(ds.x_test, small[FILES[2]].reshape(N_TEST, -1) / np.float32(255))
    fashion = load_dataset("fashion-mnist", val_size=10)  # parent layout picks the right subfolder
    assert not np.array_equal(fashion.x_test, ds.x_test)
    monkeypatch.setenv("EQDYN_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"EQDYN_DATA_DIR=.*gone.*does not exist"):
        load_dataset("mnist", val_size=10)
    # an explicit data_dir wins over the variable, and accepts the parent layout too
    assert len(load_dataset("mnist", tmp_path / "parent", val_size=10).y_train) == 90


# ----------------------------------------------------------------------------- validation helpers


def test_check_finite_and_validate_arrays() -> None:
    check_finite("x", np.zeros(3, np.float32))
    check_finite("y", np.arange(3))
    bad = np.zeros((4, 3), np.float32)
    bad[2, 1] = np.nan
    bad[3, 0] = np.inf
    with pytest.raises(DataError, match=r"`x_train` has 2 non-finite values.*index \(2, 1\)"):
        check_finite("x_train", bad)
    with pytest.raises(DataError, match=r"`x_val` has 2 non-finite"):
        validate_arrays("val", bad, np.zeros(4, np.int32), n_classes=10)
    with pytest.raises(DataError, match=r"`x_val` has 4 rows but `y_val` has 3 labels"):
        validate_arrays("val", np.zeros((4, 3)), np.zeros(3, np.int32), n_classes=10)
    with pytest.raises(DataError, match=r"`x_val` has shape \(4, 3\); expected \(n, 5\)"):
        validate_arrays("val", np.zeros((4, 3)), np.zeros(4, np.int32), n_classes=10, input_dim=5)
    with pytest.raises(DataError, match=r"`y_val` has labels outside 0\.\.9 \(min -1"):
        validate_arrays("val", np.zeros((2, 3)), np.array([-1, 2]), n_classes=10)
    with pytest.raises(DataError, match=r"`y_val` has shape \(2,\) and dtype float"):
        validate_arrays("val", np.zeros((2, 3)), np.zeros(2), n_classes=10)


def test_dataset_validates_on_construction() -> None:
    x, y = np.zeros((3, 4), np.float32), np.zeros(3, np.int32)
    ok = Dataset("toy", x, y, x, y, x, y, n_classes=2, input_shape=(2, 2))
    assert ok.input_dim == 4 and "toy" in repr(ok) and "array" not in repr(ok)
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    with pytest.raises(DataError, match="`x_test` has 1 non-finite"):
        Dataset("toy", x, y, x, y, x_nan, y, n_classes=2, input_shape=(2, 2))


# ----------------------------------------------------------------------------- digits


def test_digits_split() -> None:
    ds = load_dataset("digits")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1350, 150, 297)
    assert ds.x_train.shape == (1350, 64) and ds.input_shape == (8, 8) and ds.input_dim == 64
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10))
    again, other_seed = load_dataset("digits"), load_dataset("digits", seed=123)
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, split), getattr(again, split))
        np.testing.assert_array_equal(getattr(ds, split), getattr(other_seed, split))
    bigger = load_dataset("digits", val_size=300)
    assert (len(bigger.y_train), len(bigger.y_val)) == (1200, 300)
    np.testing.assert_array_equal(bigger.x_test, ds.x_test)  # the test set never moves
    np.testing.assert_array_equal(bigger.x_val[:150], ds.x_val)
    with pytest.raises(DataError, match=r"`val_size`=1500.*0 to 1499"):
        load_dataset("digits", val_size=1500)


# ----------------------------------------------------------------------------- download


def test_download_falls_back_to_second_mirror(server: str, tmp_path: Path) -> None:
    dest, messages = tmp_path / "dl" / "mnist", []
    out = download_dataset(
        "mnist", dest, base_urls=[f"{server}/missing/", f"{server}/mirror"], md5=False,
        progress=messages.append,
    )  # fmt: skip
    assert out == dest
    assert _listing(dest) == sorted(f + ".gz" for f in FILES)  # no temp files left
    assert any("missing/train-images" in m and "404" in m for m in messages)
    ds = load_dataset("mnist", dest, val_size=20)
    assert (len(ds.y_train), len(ds.y_test)) == (80, 20)
    messages.clear()
    download_dataset("mnist", dest, base_urls=f"{server}/missing/", md5=False, progress=messages.append)
    assert all("already present" in m for m in messages) and len(messages) == 4


def test_download_all_mirrors_fail(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    urls = [f"{server}/missing/", f"{server}/truncated/", "http://127.0.0.1:1/"]
    with pytest.raises(DataError) as info:
        download_dataset("mnist", dest, base_urls=urls, md5=False)
    message = str(info.value)
    for url in urls:
        assert url + "train-images-idx3-ubyte.gz" in message
    assert "404" in message and "incomplete transfer" in message
    assert _listing(dest) == []  # atomic: nothing partial left behind


def test_download_md5(server: str, tmp_path: Path, small, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "dl"
    with pytest.raises(DataError, match=r"md5 of the uncompressed content is [0-9a-f]{32}, not the published 6bbc9ace"):
        download_dataset("mnist", dest, base_urls=[f"{server}/mirror/"])
    assert _listing(dest) == []
    _patch_md5(monkeypatch, small)
    download_dataset("mnist", dest, base_urls=[f"{server}/mirror/"])
    assert _listing(dest) == sorted(f + ".gz" for f in FILES)


def test_load_dataset_download(
    server: str, tmp_path: Path, small, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_md5(monkeypatch, small)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    messages: list[str] = []
    ds = load_dataset(
        "mnist", download=True, val_size=20, base_url=f"{server}/mirror/", progress=messages.append
    )
    assert len(ds.y_train) == 80 and messages
    assert _listing(tmp_path / "home" / ".cache" / "eqdyn" / "mnist") == sorted(f + ".gz" for f in FILES)
    ds2 = load_dataset("mnist", tmp_path / "new", download=True, val_size=20, base_url=f"{server}/mirror/")
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)


def test_download_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="bundled with scikit-learn"):
        download_dataset("digits", tmp_path)
    with pytest.raises(DataError, match=r"`base_urls`=\[\]"):
        download_dataset("mnist", tmp_path, base_urls=[])
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match=r"`dest`=.*exists but is not a folder"):
        download_dataset("mnist", tmp_path / "f")


# ----------------------------------------------------------------------------- real data


needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "fashion-mnist").is_dir(),
    reason=f"real MNIST / Fashion-MNIST not found under {SHARED_DATA}",
)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist", SHARED_DATA / "mnist")


@needs_shared
def test_real_mnist(mnist: Dataset) -> None:
    assert (len(mnist.y_train), len(mnist.y_val), len(mnist.y_test)) == (50_000, 10_000, 10_000)
    y = np.concatenate([mnist.y_train, mnist.y_val])
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    np.testing.assert_array_equal(np.bincount(y, minlength=10), counts)
    assert list(mnist.y_train[:5]) == [5, 0, 4, 1, 9]
    x = np.concatenate([mnist.x_train, mnist.x_val])
    assert abs(float(x.mean(dtype=np.float64)) - 0.1307) < 5e-4
    assert abs(float(x.std(dtype=np.float64)) - 0.3081) < 5e-4


@needs_shared
def test_real_fashion_mnist() -> None:
    ds = load_dataset("fashion-mnist", SHARED_DATA / "fashion-mnist")
    y = np.concatenate([ds.y_train, ds.y_val])
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), [1000] * 10)


@needs_shared
def test_real_env_parent(mnist: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EQDYN_DATA_DIR", str(SHARED_DATA))
    ds = load_dataset("mnist", val_size=5000)
    assert (len(ds.y_train), len(ds.y_val)) == (55_000, 5000)
    np.testing.assert_array_equal(ds.y_val, mnist.y_val[5000:])


@needs_shared
def test_real_files_match_published_md5(tmp_path: Path) -> None:
    """Downloading from a file:// mirror of the real data passes the md5 check."""
    mirror = (SHARED_DATA / "mnist").as_uri() + "/"
    dest = download_dataset("mnist", tmp_path / "mnist", base_urls=[mirror])
    assert _listing(dest) == sorted(f + ".gz" for f in FILES)
    for name in ("mnist", "fashion-mnist"):
        for stem, digest in zip(FILES, _datasets._MD5[name]):
            data = gzip.decompress((SHARED_DATA / name / (stem + ".gz")).read_bytes())
            assert hashlib.md5(data).hexdigest() == digest
