"""fluxlenet.data: readers, splits, directory resolution, validation, downloads (local server only)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fluxlenet import data
from fluxlenet.data import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FASHION = SHARED / "fashion-mnist"
MNIST = SHARED / "mnist"
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                   reason=f"real Fashion-MNIST not found in {FASHION}")
needs_mnist_t10k = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                      reason=f"real MNIST test set not found in {MNIST}")


@pytest.fixture(autouse=True)
def _quick_and_isolated(monkeypatch):
    monkeypatch.setattr(data, "BACKOFF_S", 0.01)
    monkeypatch.setattr(data, "TIMEOUT_S", 5.0)
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    monkeypatch.delenv(data.DATA_ENV, raising=False)


# -- generated files in the official formats ---------------------------------------------

def idx_images(x: np.ndarray) -> bytes:
    n = len(x)
    return (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") \
        + (28).to_bytes(4, "big") + x.astype(np.uint8).tobytes()


def idx_labels(y: np.ndarray) -> bytes:
    return (2049).to_bytes(4, "big") + len(y).to_bytes(4, "big") + y.astype(np.uint8).tobytes()


def small_mnist(ntrain=30, ntest=20, seed=0) -> dict[str, bytes]:
    """{filename: gzip bytes} of a tiny MNIST-format dataset."""
    rng = np.random.default_rng(seed)
    xs = {n: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for n in (ntrain, ntest)}
    return {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_images(xs[ntrain]), 1),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_labels(np.arange(ntrain) % 10), 1),
        "t10k-images-idx3-ubyte.gz": gzip.compress(idx_images(xs[ntest]), 1),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_labels(np.arange(ntest) % 10), 1),
    }


@functools.lru_cache(maxsize=None)
def cifar_batch(k: int, rows: int = 10000, protocol: int = 2) -> bytes:
    """One pickled batch as in cifar-10-python.tar.gz (the originals are Python 2 protocol-2 pickles)."""
    # cheap, compressible, distinct per batch and per row (uint8 arithmetic wraps mod 256)
    data_ = (np.arange(rows, dtype=np.uint8)[:, None] * np.uint8(7) + np.arange(3072).astype(np.uint8)
             + np.uint8(31 * k % 256))
    batch = {b"batch_label": f"batch {k}".encode(), b"labels": [int((i + k) % 10) for i in range(rows)],
             b"data": data_, b"filenames": [b"x.png"] * rows}
    return pickle.dumps(batch, protocol=protocol)


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(scope="module")
def cifar_tar(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cifar") / "cifar10"
    folder.mkdir()
    members = {"batches.meta": pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)}
    members.update({name: cifar_batch(k) for k, name in enumerate(CIFAR_NAMES)})
    return write_tar(folder / "cifar-10-python.tar.gz", members)


# -- a local HTTP server ----------------------------------------------------------------

@pytest.fixture
def server():
    routes: dict[str, tuple[bytes, int | None]] = {}   # path -> (body, claimed Content-Length)
    hits: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] += 1
            if self.path not in routes:
                self.send_error(404)
                return
            body, claimed = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{srv.server_port}", routes=routes, hits=hits)
    finally:
        srv.shutdown()
        srv.server_close()


def md5_of(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


# -- import hygiene ---------------------------------------------------------------------

def test_import_pulls_no_torch_or_julia():
    code = ("import sys, fluxlenet.data; "
            "bad = [m for m in ('torch', 'juliacall') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# -- real files -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion():
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real Fashion-MNIST not found in {FASHION}")
    return data.load_dataset("fashion-mnist", FASHION, download=False, progress=False)


@needs_fashion
def test_fashion_mnist_real(fashion):
    assert fashion.train_x.shape == (60000, 1, 28, 28) and fashion.test_x.shape == (10000, 1, 28, 28)
    assert fashion.train_x.dtype == np.float32 and fashion.train_y.dtype == np.int64
    assert fashion.train_x.min() == 0.0 and fashion.train_x.max() == 1.0
    assert np.bincount(fashion.train_y).tolist() == [6000] * 10
    assert np.bincount(fashion.test_y).tolist() == [1000] * 10
    assert fashion.input_shape == (1, 28, 28) and fashion.nclasses == 10
    assert fashion.valid_x is None and fashion.name == "fashion-mnist"
    # x/255 exactly, and the row-major [n, 0, row, col] layout of the file
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 28, 28)
    np.testing.assert_array_equal(fashion.test_x[:, 0], raw.astype(np.float32) / np.float32(255))


@needs_fashion
def test_data_dir_root_or_dataset_folder(fashion):
    assert data.dataset_dir("fashion-mnist", SHARED) == FASHION
    assert data.dataset_dir("fashion-mnist", FASHION) == FASHION
    assert data.dataset_dir("mnist-t10k-split", SHARED) == MNIST
    ds = data.load_dataset("fashion-mnist", SHARED, train_size=100, test_size=50, download=False, progress=False)
    assert ds.train_x.shape == (100, 1, 28, 28) and ds.test_x.shape == (50, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_x, fashion.train_x[:100])
    np.testing.assert_array_equal(ds.test_y, fashion.test_y[:50])


def test_dataset_dir_resolution(tmp_path, monkeypatch):
    assert data.dataset_dir("cifar10", tmp_path) == tmp_path / "cifar10"     # empty root: its folder
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"")                     # the root holds the files
    assert data.dataset_dir("mnist", tmp_path) == tmp_path
    (tmp_path / "mnist").mkdir()                                               # a dataset folder wins
    assert data.dataset_dir("mnist", tmp_path) == tmp_path / "mnist"
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    assert data.dataset_dir("fashion-mnist") == tmp_path / "env" / "fashion-mnist"
    assert data.dataset_dir("fashion-mnist", tmp_path / "cli") == tmp_path / "cli" / "fashion-mnist"
    monkeypatch.delenv(data.DATA_ENV)
    assert "fluxlenet" in str(data.dataset_dir("mnist"))
    with pytest.raises(DataError, match="unknown dataset"):
        data.dataset_dir("svhn", tmp_path)


@needs_fashion
def test_sizes_beyond_the_data(fashion):
    with pytest.raises(DataError, match="train_size 60001 is more than the 60000"):
        data.load_dataset("fashion-mnist", FASHION, train_size=60001, download=False, progress=False)
    with pytest.raises(DataError, match="test_size 10001 is more than the 10000"):
        data.load_dataset("fashion-mnist", FASHION, test_size=10001, download=False, progress=False)


@needs_mnist_t10k
def test_mnist_t10k_split():
    ds = data.load_dataset("mnist-t10k-split", SHARED, download=False, progress=False)
    assert ds.train_x.shape == (8000, 1, 28, 28) and ds.test_x.shape == (2000, 1, 28, 28)
    assert ds.train_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]   # the MNIST test set's first digits
    full = data.read_idx_images(MNIST / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(ds.test_x, full[8000:])
    ds = data.load_dataset("mnist-t10k-split", MNIST, train_size=300, test_size=100, download=False, progress=False)
    assert (len(ds.train_y), len(ds.test_y)) == (300, 100)
    np.testing.assert_array_equal(ds.test_x, full[8000:8100])


@needs_mnist_t10k
def test_mnist_without_training_images_says_what_is_missing(tmp_path):
    # a folder of our own: the shared MNIST is complete now, so leave its training images out here
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in IDX_FILES:
        if name != "train-images-idx3-ubyte.gz":
            (folder / name).symlink_to(MNIST / name)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*data fetch --dataset mnist"):
        data.load_dataset("mnist", tmp_path, download=False, progress=False)
    report = dict(data.verify("mnist", tmp_path))
    assert report[str(folder / "train-images-idx3-ubyte.gz")] == "missing"
    assert report[str(folder / "train-labels-idx1-ubyte.gz")] == "ok"


@needs_mnist_t10k
def test_valid_split_balanced_ordered_deterministic():
    full = data.load_dataset("mnist-t10k-split", MNIST, download=False, progress=False)
    a = data.load_dataset("mnist-t10k-split", MNIST, valid_size=1000, seed=0, download=False, progress=False)
    b = data.load_dataset("mnist-t10k-split", MNIST, valid_size=1000, seed=0, download=False, progress=False)
    c = data.load_dataset("mnist-t10k-split", MNIST, valid_size=1000, seed=1, download=False, progress=False)
    assert np.bincount(a.valid_y, minlength=10).tolist() == [100] * 10
    assert a.valid_x.shape == (1000, 1, 28, 28) and a.train_x.shape == (7000, 1, 28, 28)
    np.testing.assert_array_equal(a.valid_x, b.valid_x)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.valid_x, c.valid_x)
    np.testing.assert_array_equal(a.test_x, full.test_x)       # the test set is untouched

    # every row comes from the full train set; train and valid are disjoint, cover it, keep its order
    where = {row.tobytes(): i for i, row in enumerate(full.train_x)}
    assert len(where) == 8000
    ti = np.array([where[r.tobytes()] for r in a.train_x])
    vi = np.array([where[r.tobytes()] for r in a.valid_x])
    assert np.all(np.diff(ti) > 0) and np.all(np.diff(vi) > 0)
    assert sorted(np.concatenate([ti, vi]).tolist()) == list(range(8000))
    np.testing.assert_array_equal(a.train_y, full.train_y[ti])

    # held out of the full set before train_size keeps the first N
    d = data.load_dataset("mnist-t10k-split", MNIST, valid_size=1000, train_size=500, download=False, progress=False)
    np.testing.assert_array_equal(d.train_x, a.train_x[:500])
    np.testing.assert_array_equal(d.valid_y, a.valid_y)

    with pytest.raises(DataError, match="multiple of 10"):
        data.load_dataset("mnist-t10k-split", MNIST, valid_size=15, download=False, progress=False)
    with pytest.raises(DataError, match="needs 1000 samples of class"):
        data.load_dataset("mnist-t10k-split", MNIST, valid_size=10000, download=False, progress=False)


# -- damaged files ----------------------------------------------------------------------

def _gunzip(path: Path) -> bytes:
    with gzip.open(path) as f:
        return f.read()


def _set_u32(raw: bytes, at: int, value: int) -> bytes:
    return raw[:at] + value.to_bytes(4, "big") + raw[at + 4:]


DAMAGE = {
    "truncated gzip": ("t10k-images-idx3-ubyte.gz", lambda b: b[: len(b) // 2], "truncated"),
    "not gzip, not IDX": ("t10k-images-idx3-ubyte.gz", lambda b: b"<html>404 Not Found</html>" * 50,
                          "not an IDX images file"),
    "labels magic on images": ("t10k-images-idx3-ubyte.gz",
                               lambda b: gzip.compress(_set_u32(gzip.decompress(b), 0, 2049), 1), "magic number 2049"),
    "wrong count": ("t10k-images-idx3-ubyte.gz",
                    lambda b: gzip.compress(_set_u32(gzip.decompress(b), 4, 10001), 1), "header says 10001"),
    "not 28x28": ("t10k-images-idx3-ubyte.gz",
                  lambda b: gzip.compress(_set_u32(gzip.decompress(b), 8, 32), 1), "32x28"),
    "bad gzip crc": ("t10k-labels-idx1-ubyte.gz", lambda b: b[:-8] + bytes(8), "not valid gzip"),
    "label 10": ("t10k-labels-idx1-ubyte.gz",
                 lambda b: gzip.compress(gzip.decompress(b)[:-1] + bytes([10]), 1), "label 10"),
    "too short": ("t10k-labels-idx1-ubyte.gz", lambda b: gzip.compress(b"\x00\x00\x08", 1), "too short"),
    "count mismatch": ("t10k-labels-idx1-ubyte.gz",
                       lambda b: gzip.compress(idx_labels(np.frombuffer(gzip.decompress(b), np.uint8, offset=8)[:-1]),
                                               1), "9999 labels but"),
}


@needs_mnist_t10k
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_idx_is_a_one_line_error(tmp_path, case):
    filename, damage, expected = DAMAGE[case]
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in IDX_FILES[2:]:
        shutil.copyfile(MNIST / name, folder / name)
    (folder / filename).write_bytes(damage((MNIST / filename).read_bytes()))
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist-t10k-split", tmp_path, download=True, progress=False)
    message = str(err.value)
    assert filename in message and expected in message and "\n" not in message
    assert "data fetch --dataset mnist-t10k-split" in message
    report = dict(data.verify("mnist-t10k-split", tmp_path))
    assert expected in report[str(folder / filename)]
    with pytest.raises(DataError, match=expected):
        data.fetch("mnist-t10k-split", tmp_path, progress=False, mirrors=[])


@needs_mnist_t10k
def test_uncompressed_idx_accepted(tmp_path):
    for name in IDX_FILES[2:]:
        (tmp_path / name[:-3]).write_bytes(_gunzip(MNIST / name))                    # raw IDX, no .gz
    ds = data.load_dataset("mnist-t10k-split", tmp_path, download=False, progress=False)
    ref = data.load_dataset("mnist-t10k-split", MNIST, download=False, progress=False)
    np.testing.assert_array_equal(ds.train_x, ref.train_x)
    np.testing.assert_array_equal(ds.test_y, ref.test_y)
    assert all(status == "ok" for _, status in data.verify("mnist-t10k-split", tmp_path))
    # a browser that gunzipped the download but kept the .gz name
    for name in IDX_FILES[2:]:
        (tmp_path / name[:-3]).rename(tmp_path / name)
    np.testing.assert_array_equal(
        data.load_dataset("mnist-t10k-split", tmp_path, download=False, progress=False).test_x, ref.test_x)
    # a truncated raw file
    raw = tmp_path / IDX_FILES[2]
    raw.write_bytes(raw.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        data.read_idx_images(raw)


# -- data that is not what it says ------------------------------------------------------

def _copy(src: Path, dst: Path, names: dict[str, str]) -> Path:
    """dst/<new name> = src/<name> for each pair."""
    dst.mkdir(parents=True, exist_ok=True)
    for name, new_name in names.items():
        shutil.copyfile(src / name, dst / new_name)
    return dst


@needs_fashion
def test_train_and_test_files_swapped_are_known_by_content(tmp_path):
    folder = _copy(FASHION, tmp_path / "fashion-mnist", dict(zip(IDX_FILES, IDX_FILES[2:] + IDX_FILES[:2])))
    report = dict(data.verify("fashion-mnist", tmp_path))
    assert report[str(folder / IDX_FILES[0])].startswith(
        "is Fashion-MNIST's t10k-images-idx3-ubyte.gz (known by its content), not its train-images-idx3-ubyte.gz; "
        "the files are swapped or misnamed")
    assert all("swapped" in state for state in report.values()), report
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: is Fashion-MNIST's train-images"):
        data.load_dataset("fashion-mnist", tmp_path, download=False, progress=False)


@needs_fashion
def test_fashion_mnist_given_as_mnist_is_refused(tmp_path):
    report = dict(data.verify("mnist", FASHION))
    assert report[str(FASHION / IDX_FILES[1])] == (
        "is Fashion-MNIST's train-labels-idx1-ubyte.gz (known by its content), not MNIST's; give --dataset "
        "fashion-mnist, or point --data-dir at the MNIST files")
    for name in ("mnist", "mnist-t10k-split"):
        with pytest.raises(DataError, match="not MNIST's; give --dataset fashion-mnist") as err:
            data.load_dataset(name, FASHION, train_size=100, test_size=100, download=False, progress=False)
        assert "\n" not in str(err.value)
    assert all(state == "ok" for _, state in data.verify("fashion-mnist", FASHION))


@needs_mnist_t10k
def test_mnist_is_known_as_mnist():
    assert all(state == "ok" for _, state in data.verify("mnist", MNIST))
    ds = data.load_dataset("mnist", MNIST, train_size=50, test_size=50, download=False, progress=False)
    assert ds.train_y[:5].tolist() == [5, 0, 4, 1, 9]  # the MNIST training set's first digits


@needs_fashion
def test_a_split_larger_than_the_original_is_refused(tmp_path):
    """Unknown content (one pixel changed) is checked by its counts: a test set of 60,000 is the
    training set, one of 10,001 more than there is."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    images = bytearray(_gunzip(FASHION / IDX_FILES[0]))
    images[-1] ^= 1
    labels = _gunzip(FASHION / IDX_FILES[1])
    (folder / IDX_FILES[2][:-3]).write_bytes(bytes(images))  # uncompressed
    (folder / IDX_FILES[3][:-3]).write_bytes(labels)
    expected = "holds 60,000 samples, as many as the Fashion-MNIST training set, where its test set has 10,000"
    assert expected in dict(data.verify("fashion-mnist", tmp_path))[str(folder / IDX_FILES[2][:-3])]
    (folder / IDX_FILES[2][:-3]).write_bytes(idx_images(np.zeros((10001, 28, 28), np.uint8)))
    (folder / IDX_FILES[3][:-3]).write_bytes(idx_labels(np.zeros(10001, np.uint8)))
    assert dict(data.verify("fashion-mnist", tmp_path))[str(folder / IDX_FILES[3][:-3])] == \
        "holds 10,001 samples, more than the 10,000 of the Fashion-MNIST test set"


def test_small_generated_data_is_only_checked_by_structure(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, blob in small_mnist(ntrain=30, ntest=40).items():  # even a test set larger than the training set
        (folder / name).write_bytes(blob)
    ds = data.load_dataset("mnist", tmp_path, download=False, progress=False)
    assert (len(ds.train_y), len(ds.test_y)) == (30, 40)


def test_a_directory_where_a_file_should_be_is_named_not_downloaded_over(tmp_path, server):
    files = small_mnist()
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
        server.routes[f"/m/{name}"] = (blob, None)
    (folder / IDX_FILES[0]).unlink()
    (folder / IDX_FILES[0]).mkdir()
    expected = "is a directory, not a file; move it away and put the file there"
    assert dict(data.verify("mnist", tmp_path))[str(folder / IDX_FILES[0])] == expected
    with pytest.raises(DataError, match=expected):
        data.fetch("mnist", tmp_path, progress=False, mirrors=[server.url + "/m/"], md5={})
    with pytest.raises(DataError, match=expected):
        data.load_dataset("mnist", tmp_path, progress=False)
    assert not server.hits and (folder / IDX_FILES[0]).is_dir()
    # the data folder itself a file
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        data.load_dataset("mnist", tmp_path / "file", progress=False)


def test_cifar_archive_that_is_a_directory(tmp_path):
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").mkdir(parents=True)
    with pytest.raises(DataError, match="is a directory, not the CIFAR-10 archive"):
        data.load_dataset("cifar10", tmp_path, progress=False)


def test_cifar_batches_swapped_are_known_by_their_label(tmp_path):
    """The original batches say which they are ('training batch 1 of 5', 'testing batch 1 of 1')."""
    def labelled(k, label):
        batch = pickle.loads(cifar_batch(k), encoding="bytes")
        batch[b"batch_label"] = label.encode()
        return pickle.dumps(batch, protocol=2)
    members = {name: labelled(k, f"training batch {k + 1} of 5") for k, name in enumerate(CIFAR_NAMES[:5])}
    members["test_batch"] = labelled(5, "testing batch 1 of 1")
    folder = tmp_path / "cifar10"
    folder.mkdir()
    write_tar(folder / "cifar-10-python.tar.gz", members)
    assert data.verify("cifar10", tmp_path)[0][1] == "ok"
    members["test_batch"], members["data_batch_1"] = members["data_batch_1"], members["test_batch"]
    write_tar(folder / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError, match="member cifar-10-batches-py/data_batch_1 is the 'testing batch 1 of 1', "
                                        "not the 'training batch 1 of 5': the batches are swapped or misnamed"):
        data.load_dataset("cifar10", tmp_path, progress=False)


# -- CIFAR-10 ---------------------------------------------------------------------------

def test_cifar_tarball_and_extracted_folder(cifar_tar, tmp_path):
    ds = data.load_dataset("cifar10", cifar_tar.parent.parent, valid_size=5000, download=False, progress=False)
    assert ds.train_x.shape == (45000, 3, 32, 32) and ds.valid_x.shape == (5000, 3, 32, 32)
    assert ds.test_x.shape == (10000, 3, 32, 32) and ds.input_shape == (3, 32, 32)
    assert ds.train_x.dtype == np.float32 and ds.test_y.dtype == np.int64
    assert np.bincount(ds.valid_y).tolist() == [500] * 10
    assert np.bincount(np.concatenate([ds.train_y, ds.valid_y])).tolist() == [5000] * 10
    test_row = pickle.loads(cifar_batch(5), encoding="bytes")[b"data"][9]
    np.testing.assert_array_equal(ds.test_x[9], (test_row.astype(np.float32) / 255).reshape(3, 32, 32))
    assert ds.test_y[:2].tolist() == [5, 6]
    del ds

    with tarfile.open(cifar_tar) as tar:
        tar.extractall(tmp_path, filter="data")
    assert data.dataset_dir("cifar10", tmp_path) == tmp_path
    assert data.verify("cifar10", tmp_path) == [(str(tmp_path / "cifar-10-batches-py"), "ok")]
    train_x, train_y, test_x, test_y = data.read_cifar10(tmp_path / "cifar-10-batches-py")
    assert train_x.shape == (50000, 3, 32, 32) and test_x.shape == (10000, 3, 32, 32)
    row = pickle.loads(cifar_batch(1), encoding="bytes")[b"data"][3]            # data_batch_2, row 3
    np.testing.assert_array_equal(train_x[10003], (row.astype(np.float32) / 255).reshape(3, 32, 32))
    assert train_y[:3].tolist() == [0, 1, 2] and train_y[10000:10002].tolist() == [1, 2]
    assert 0.0 <= train_x.min() and train_x.max() <= 1.0


@pytest.mark.parametrize("case", ["truncated", "garbage", "missing member", "short batch", "bad labels",
                                  "code in pickle"])
def test_cifar_damaged(tmp_path, cifar_tar, case):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    path = folder / "cifar-10-python.tar.gz"
    if case == "truncated":
        blob = cifar_tar.read_bytes()
        path.write_bytes(blob[: len(blob) // 3])
        expected = "truncated"
    elif case == "garbage":
        path.write_bytes(b"\x1f\x8b" + bytes(5000))
        expected = "not a readable tar.gz"
    elif case == "missing member":
        write_tar(path, {"test_batch": cifar_batch(5)})
        expected = "lacks cifar-10-batches-py/data_batch_1"
    elif case == "short batch":
        write_tar(path, {"data_batch_1": cifar_batch(0, rows=100)})
        expected = "data_batch_1 has data uint8 (100, 3072)"
    elif case == "bad labels":
        batch = pickle.loads(cifar_batch(0), encoding="bytes")
        batch[b"labels"][7] = 10
        write_tar(path, {"data_batch_1": pickle.dumps(batch, protocol=4)})
        expected = "labels outside 0..9"
    else:
        class Evil:
            def __reduce__(self):
                return (shutil.rmtree, (str(tmp_path / "victim"),))
        (tmp_path / "victim").mkdir()
        write_tar(path, {"data_batch_1": pickle.dumps({b"data": Evil()})})
        expected = "unexpected object shutil.rmtree"
    with pytest.raises(DataError) as err:
        data.load_dataset("cifar10", tmp_path, download=False, progress=False)
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and expected in message and "\n" not in message
    assert "data fetch --dataset cifar10" in message
    assert expected in data.verify("cifar10", tmp_path)[0][1]
    if case == "code in pickle":
        assert (tmp_path / "victim").is_dir()


# -- downloads from a local server ------------------------------------------------------

def test_download_success_then_load(tmp_path, server):
    files = small_mnist()
    for name, blob in files.items():
        server.routes[f"/m1/{name}"] = (blob, None)
    folder = data.fetch("mnist", tmp_path, progress=False, mirrors=[server.url + "/m1/"],
                        md5={n: md5_of(b) for n, b in files.items()})
    assert folder == tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    ds = data.load_dataset("mnist", tmp_path, download=False, progress=False)
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.test_x.shape == (20, 1, 28, 28)
    assert ds.train_y.tolist() == [i % 10 for i in range(30)]
    assert all(status == "ok" for _, status in data.verify("mnist", tmp_path))
    # present files are not downloaded again
    data.fetch("mnist", tmp_path, progress=False, mirrors=[server.url + "/m1/"])
    assert all(n == 1 for n in server.hits.values())


def test_mirror_env_var_and_load_dataset_downloads(tmp_path, server, monkeypatch, capsys):
    files = small_mnist(ntrain=40)
    for name, blob in files.items():
        server.routes[f"/mirror/{name}"] = (blob, None)
    monkeypatch.setenv(data.MIRROR_ENV, server.url + "/mirror")
    monkeypatch.setitem(data.MD5, "fashion-mnist", {n: md5_of(b) for n, b in files.items()})
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    ds = data.load_dataset("fashion-mnist", progress=True)
    assert ds.train_x.shape == (40, 1, 28, 28)
    assert (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err      # the progress bar goes to stderr


def test_download_md5_mismatch(tmp_path, server):
    files = small_mnist()
    for name, blob in files.items():
        server.routes[f"/m1/{name}"] = (blob, None)
    table = {n: md5_of(b) for n, b in files.items()}
    table["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    with pytest.raises(DataError) as err:
        data.fetch("mnist-t10k-split", tmp_path, progress=False, mirrors=[server.url + "/m1/"], md5=table)
    message = str(err.value)
    folder = tmp_path / "mnist"
    assert "t10k-labels-idx1-ubyte.gz" in message and server.url + "/m1/t10k-labels-idx1-ubyte.gz" in message
    assert "md5" in message and "by hand" in message and str(folder) in message and "\n" not in message
    assert server.hits["/m1/t10k-labels-idx1-ubyte.gz"] == data.TRIES
    assert not (folder / "t10k-labels-idx1-ubyte.gz").exists() and leftovers(folder) == []
    assert (folder / "t10k-images-idx3-ubyte.gz").is_file()          # the good file is kept


def test_download_404_then_second_mirror(tmp_path, server):
    files = small_mnist()
    for name, blob in files.items():
        server.routes[f"/m2/{name}"] = (blob, None)
    data.fetch("mnist", tmp_path, progress=False, mirrors=[server.url + "/m1/", server.url + "/m2/"],
               md5={n: md5_of(b) for n, b in files.items()})
    assert server.hits["/m1/train-images-idx3-ubyte.gz"] == 1      # a 404 is not retried
    assert server.hits["/m2/train-images-idx3-ubyte.gz"] == 1
    assert len(data.load_dataset("mnist", tmp_path, download=False, progress=False).test_y) == 20


def test_partial_download_never_under_final_name(tmp_path, server):
    files = small_mnist()
    blob = files["t10k-images-idx3-ubyte.gz"]
    server.routes["/m1/t10k-images-idx3-ubyte.gz"] = (blob[:1000], len(blob))     # connection drops early
    with pytest.raises(DataError, match=r"could not download t10k-images-idx3-ubyte\.gz.*1000 of"):
        data.fetch("mnist-t10k-split", tmp_path, progress=False, mirrors=[server.url + "/m1/"], md5={})
    folder = tmp_path / "mnist"
    assert server.hits["/m1/t10k-images-idx3-ubyte.gz"] == data.TRIES
    assert not (folder / "t10k-images-idx3-ubyte.gz").exists() and leftovers(folder) == []


def test_download_unreachable_and_invalid_download(tmp_path, server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    with pytest.raises(DataError, match="could not download t10k-images-idx3-ubyte.gz .*by hand"):
        data.fetch("mnist-t10k-split", tmp_path, progress=False, mirrors=[dead])
    # right md5 (none given) but not an IDX file: caught by the structural check
    server.routes["/m1/t10k-images-idx3-ubyte.gz"] = (b"<html>moved</html>", None)
    with pytest.raises(DataError, match="not an IDX images file.*download is damaged"):
        data.fetch("mnist-t10k-split", tmp_path, progress=False, mirrors=[server.url + "/m1/"], md5={})


def test_download_cifar(tmp_path, server, cifar_tar):
    blob = cifar_tar.read_bytes()
    server.routes["/kriz/cifar-10-python.tar.gz"] = (blob, None)
    folder = data.fetch("cifar10", tmp_path, progress=False, mirrors=[server.url + "/kriz/"],
                        md5={"cifar-10-python.tar.gz": md5_of(blob)})
    assert (folder / "cifar-10-python.tar.gz").read_bytes() == blob
