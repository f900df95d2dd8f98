"""Datasets as NumPy arrays: MNIST, Fashion-MNIST, CIFAR-10, read from the files as distributed.

Images come out float32 in [0, 1] (x/255, no mean/std normalisation, as MLDatasets gives Flux),
shaped (N, C, H, W); labels int64 in 0..9. Nothing here imports torch or juliacall.

Where the files live (`dataset_dir`): the explicit `data_dir` (CLI `--data-dir`), else the
environment variable FLUXLENET_DATA, else platformdirs' user cache dir for "fluxlenet". Within
that root the dataset's folder ("mnist", "fashion-mnist", "cifar10") is used, unless the root
itself already holds the dataset's files, so `--data-dir shared/data` and
`--data-dir shared/data/mnist` both work.

Downloads: each file is tried from the mirrors in MIRRORS[source] in order, TRIES times per
mirror with a short backoff, checked against MD5[source][filename] (the published md5s, as in
torchvision), written through fsutil.atomic_path so a partial download never appears under
the final name. To point every download elsewhere (a local mirror, a test server), set the
environment variable FLUXLENET_MIRROR to a base URL (or several, comma-separated): the file's
name is appended to it and it replaces all the built-in mirrors. `fetch` also takes `mirrors=`
(base URLs) and `md5=` ({filename: md5 or None}) arguments that override both tables.

Files already present are checked by structure, not by md5 (re-compressed copies must pass):
IDX magic, header count and dims, exact payload size, labels in 0..9; CIFAR batches of
10000x3072 uint8 with 10000 labels. Any problem is a DataError whose message is one line
naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import pickle
import re
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fsutil import atomic_path

__all__ = [
    "DataError", "Dataset", "load_dataset", "dataset_dir", "data_root", "verify", "fetch",
    "download_file", "read_idx_images", "read_idx_labels", "read_cifar10", "MIRRORS", "MD5",
]

NCLASSES = 10

# dataset name -> the source whose files it reads (mnist-t10k-split reads MNIST's t10k files)
SOURCE = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10", "mnist-t10k-split": "mnist"}
# source -> folder name under the data root
FOLDER = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10"}

_IDX_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_IDX_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"

# image shape (C, H, W) of each dataset, known before reading it
INPUT_SHAPE = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32),
               "mnist-t10k-split": (1, 28, 28)}

# files each dataset needs, as downloaded
FILES = {
    "mnist": _IDX_TRAIN + _IDX_TEST,
    "fashion-mnist": _IDX_TRAIN + _IDX_TEST,
    "cifar10": (CIFAR_TARBALL,),
    "mnist-t10k-split": _IDX_TEST,
}

# base URLs, tried in order; the file name is appended
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}

# published md5s of the files as served (torchvision/datasets/mnist.py and cifar.py)
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {CIFAR_TARBALL: "c58f30108f718f92721af3b95e74349a"},
}

# The data must be what the run says it is (it is recorded as such, and parity compares with the
# published figures by it). Samples per split as distributed: no split may hold more, and a
# split of the other's size is a swap.
SPLIT_COUNTS = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000), "cifar10": (50000, 10000)}
LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
# The IDX files as distributed, known by the sha256 of their decompressed bytes (first 16 hex
# digits; re-compressed copies have the same): the content says which dataset and file it is.
KNOWN_IDX = {
    "ba891046e6505d7a": ("mnist", "train-images-idx3-ubyte.gz"),
    "65a50cbbf4e906d7": ("mnist", "train-labels-idx1-ubyte.gz"),
    "0fa7898d509279e4": ("mnist", "t10k-images-idx3-ubyte.gz"),
    "ff7bcfd416de3373": ("mnist", "t10k-labels-idx1-ubyte.gz"),
    "c59f468a2f672dc8": ("fashion-mnist", "train-images-idx3-ubyte.gz"),
    "bad3541b69d91243": ("fashion-mnist", "train-labels-idx1-ubyte.gz"),
    "5b4141f0afbad91e": ("fashion-mnist", "t10k-images-idx3-ubyte.gz"),
    "0402a96d92fd2663": ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"),
}
_KNOWN_IDX_SIZES = {16 + 60000 * 784, 16 + 10000 * 784, 8 + 60000, 8 + 10000}  # only these are hashed

MIRROR_ENV = "FLUXLENET_MIRROR"
DATA_ENV = "FLUXLENET_DATA"
TRIES = 3            # per mirror
BACKOFF_S = 1.0      # sleep BACKOFF_S * attempt between tries
TIMEOUT_S = 30.0     # socket timeout for connect and each read
_CHUNK = 1 << 20

# exact float32 of i/255 for every byte, so the conversion is one table lookup
_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255)


class DataError(Exception):
    """A dataset that cannot be used; the message is one line for the user."""


@dataclass
class Dataset:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    valid_x: np.ndarray | None = None
    valid_y: np.ndarray | None = None
    name: str = ""
    nclasses: int = NCLASSES

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def check_finite(self) -> None:
        """Refuse images holding NaN or Inf, in both backends with the same words (the Flux side:
        `prepare` in julia/src/train.jl). NNlib's max pooling drops a NaN that torch's propagates,
        so the two frameworks would disagree about what such data means."""
        for split, x in (("training", self.train_x), ("test", self.test_x), ("validation", self.valid_x)):
            if x is None or np.isfinite(x).all():
                continue
            bad = ~np.isfinite(x.reshape(len(x), -1))
            count, sample = int(bad.sum()), int(np.flatnonzero(bad.any(axis=1))[0])
            raise DataError(f"the {split} images hold {count} NaN or infinite value{'' if count == 1 else 's'} "
                            f"(the first in sample {sample}): fix the data; no loss can be computed from them")


# -- where the files are ---------------------------------------------------------------

def _source(name: str) -> str:
    if name not in SOURCE:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(SOURCE)}")
    return SOURCE[name]


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The root: explicit data_dir, else $FLUXLENET_DATA, else the user cache dir."""
    if data_dir is not None and str(data_dir) != "":
        root = Path(data_dir).expanduser()
    elif os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser()
    else:
        import platformdirs
        root = Path(platformdirs.user_cache_dir("fluxlenet"))
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; --data-dir (or ${DATA_ENV}) names the folder that "
                        f"holds the dataset files")
    return root


def _present(folder: Path, filename: str) -> Path | None:
    """The file as stored: `filename`, its uncompressed twin (no .gz), or CIFAR's extracted folder.
    Something else under the name (a directory) counts as present, so that its check names it
    instead of a download going over it."""
    path = folder / filename
    if path.exists():
        return path
    if filename == CIFAR_TARBALL:
        extracted = folder / CIFAR_FOLDER
        return extracted if extracted.is_dir() else None
    if filename.endswith(".gz") and (folder / filename[:-3]).is_file():
        return folder / filename[:-3]
    return None


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding (or to hold) `name`'s files; see the module docstring."""
    source = _source(name)
    root = data_root(data_dir)
    sub = root / FOLDER[source]
    if sub.is_dir():
        return sub
    if sub.exists():
        raise DataError(f"{sub} is a file, not the folder of the {name} files; move it away")
    if any(_present(root, f) for f in FILES[name]):
        return root
    return sub


def _fetch_hint(name: str, data_dir) -> str:
    cmd = f"python -m fluxlenet data fetch --dataset {name}"
    if data_dir is not None and str(data_dir) != "":
        cmd += f" --data-dir {data_dir}"
    return f"`{cmd}`"


def _redo_hint(name: str, data_dir) -> str:
    return f"delete it and run {_fetch_hint(name, data_dir)}, or replace it with a good copy"


# -- readers ---------------------------------------------------------------------------

class _Bad(Exception):
    """A file that is not what it should be; turned into a one-line DataError by the caller.
    `hint`: what to do, where it is not the caller's usual "replace the file"."""

    def __init__(self, path, what: str, hint: str | None = None):
        what = " ".join(what.split())  # one line, whatever the underlying error said
        super().__init__(f"{path}: {what}")
        self.path, self.what, self.hint = Path(path), what, hint


def _error(bad: _Bad, hint: str) -> DataError:
    return DataError(f"{bad.path}: {bad.what}; {bad.hint or hint}")


def _count_problem(expect: tuple[str, str], count: int) -> str | None:
    """Why a file of `count` samples cannot be `expect` = (source, filename), by the counts as distributed."""
    source, filename = expect
    train, test = SPLIT_COUNTS[source]
    own, other, split, other_split = (train, test, "training", "test") if filename.startswith("train") \
        else (test, train, "test", "training")
    if count <= own:
        return None  # a subset, or a small dataset of the same format: only its structure is checked
    label = LABELS[source]
    if count == other:
        return (f"holds {count:,} samples, as many as the {label} {other_split} set, where its {split} set has "
                f"{own:,}: the train and test files are swapped or misnamed")
    return f"holds {count:,} samples, more than the {own:,} of the {label} {split} set"


def _identify(path: Path, raw: bytes, expect: tuple[str, str]) -> None:
    """Refuse a file known by its content that is not `expect` = (source, filename)."""
    if len(raw) not in _KNOWN_IDX_SIZES:
        return
    known = KNOWN_IDX.get(hashlib.sha256(raw).hexdigest()[:16])
    if known is None or known == expect:
        return
    (source, filename), (want_source, want_filename) = known, expect
    if source != want_source:
        raise _Bad(path, f"is {LABELS[source]}'s {filename} (known by its content), not {LABELS[want_source]}'s",
                   f"give --dataset {source}, or point --data-dir at the {LABELS[want_source]} files")
    raise _Bad(path, f"is {LABELS[source]}'s {filename} (known by its content), not its {want_filename}",
               "the files are swapped or misnamed: give each its own name")


def _read_bytes(path: Path) -> bytes:
    """The file's IDX bytes, gunzipped if it is gzip (sniffed, not by name: browsers often
    gunzip a download and keep the .gz name)."""
    if path.is_dir():
        raise _Bad(path, "is a directory, not a file", "move it away and put the file there")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _Bad(path, f"cannot be read ({e.strerror or e})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise _Bad(path, "is truncated (the gzip stream ends early)") from None
    except (OSError, zlib.error) as e:
        raise _Bad(path, f"is not valid gzip data ({e})") from None


def _load_idx(path: Path, kind: str, expect: tuple[str, str] | None = None) -> np.ndarray:
    """Check an IDX file and return it as uint8: (N, 28, 28) images or (N,) labels. expect: the
    (source, filename) it should be, refused when its content is another known file."""
    raw = _read_bytes(path)
    magic, ndims = (2051, 3) if kind == "images" else (2049, 1)
    header = 4 + 4 * ndims
    if len(raw) < header:
        raise _Bad(path, f"is too short ({len(raw)} bytes) for an IDX {kind} file")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _Bad(path, f"is not an IDX {kind} file (magic number {found}, expected {magic})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise _Bad(path, f"holds {dims[1]}x{dims[2]} images, expected 28x28")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise _Bad(path, f"header says {dims[0]} {kind} ({expected} bytes) but {len(raw) - header} bytes "
                         f"follow (truncated, or not an MNIST-format file)")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and arr.size and arr.max() >= NCLASSES:
        raise _Bad(path, f"has a label {int(arr.max())}, labels must be 0..9")
    if expect is not None:  # what the run will say it trained on
        _identify(path, raw, expect)
        problem = _count_problem(expect, dims[0])
        if problem:
            raise _Bad(path, problem, "give each file its own name" if "swapped" in problem else None)
    return arr


def _images(arr: np.ndarray) -> np.ndarray:
    return _TO_FLOAT[arr.reshape(arr.shape[0], 1, 28, 28)]


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """(N, 1, 28, 28) float32 in [0, 1] from an IDX image file (gzip or raw); [n, 0, row, col]."""
    try:
        return _images(_load_idx(Path(path), "images"))
    except _Bad as e:
        raise _error(e, "replace it with a good copy") from None


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """(N,) int64 labels from an IDX label file (gzip or raw)."""
    try:
        return _load_idx(Path(path), "labels").astype(np.int64)
    except _Bad as e:
        raise _error(e, "replace it with a good copy") from None


class _BatchUnpickler(pickle.Unpickler):
    # A batch is a dict of bytes, lists and one ndarray: refuse any other global, so a
    # planted pickle cannot run code.
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _parse_cifar_batch(blob: bytes, member: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (10000, 3, 32, 32) and int64 (10000,) from one pickled batch; ValueError if wrong,
    or if its batch_label names another batch than `member` (the originals say which they are)."""
    try:
        batch = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # garbage makes pickle raise almost anything
        raise ValueError(f"is not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError("is not a CIFAR-10 batch (no b'data'/b'labels')")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (10000, 3072):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"has data {desc}, expected uint8 (10000, 3072)")
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError("has labels that are not integers") from None
    if labels.shape != (10000,):
        raise ValueError(f"has {labels.size} labels, expected 10000")
    if labels.min() < 0 or labels.max() >= NCLASSES:
        raise ValueError("has labels outside 0..9")
    said = batch.get(b"batch_label")
    said = said.decode("ascii", "replace") if isinstance(said, bytes) else str(said)
    if member is not None and re.fullmatch(r"(training|testing) batch \d+ of \d+", said):
        expected = "testing batch 1 of 1" if member == CIFAR_TEST_BATCH else f"training batch {member[-1]} of 5"
        if said != expected:
            raise ValueError(f"is the {said!r}, not the {expected!r}: the batches are swapped or misnamed")
    return data.reshape(10000, 3, 32, 32), labels


def _load_cifar(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{batch name: (x uint8, y)} from the tarball or the extracted folder."""
    wanted = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
    found = {}
    if path.is_dir() and path.name != CIFAR_FOLDER:
        raise _Bad(path, "is a directory, not the CIFAR-10 archive", "move it away and put the file there")
    if path.is_dir():
        for member in wanted:
            file = path / member
            if not file.is_file():
                raise _Bad(file, "is missing from the extracted CIFAR-10 folder")
            try:
                found[member] = _parse_cifar_batch(file.read_bytes(), member)
            except ValueError as e:
                raise _Bad(file, str(e)) from None
            except OSError as e:
                raise _Bad(file, f"cannot be read ({e.strerror or e})") from None
        return found
    try:
        # iterate in the archive's order: random access into a .tar.gz re-decompresses from the start
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                member = info.name.removeprefix("./")
                folder, _, base = member.rpartition("/")
                if folder != CIFAR_FOLDER or base not in wanted or not info.isfile():
                    continue
                blob = tar.extractfile(info).read()
                try:
                    found[base] = _parse_cifar_batch(blob, base)
                except ValueError as e:
                    raise _Bad(path, f"member {member} {e}") from None
    except EOFError:
        raise _Bad(path, "is truncated (the archive ends early)") from None
    except tarfile.ReadError:
        raise _Bad(path, "is not a readable tar.gz archive") from None
    except (tarfile.TarError, OSError, zlib.error) as e:
        raise _Bad(path, f"is not a readable tar.gz archive ({e})") from None
    missing = [m for m in wanted if m not in found]
    if missing:
        raise _Bad(path, f"lacks {', '.join(f'{CIFAR_FOLDER}/{m}' for m in missing)}")
    return found


def read_cifar10(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """train_x (50000, 3, 32, 32) float32 in [0, 1], train_y, test_x (10000, 3, 32, 32), test_y
    from cifar-10-python.tar.gz or an extracted cifar-10-batches-py/ folder."""
    try:
        return _cifar_arrays(_load_cifar(Path(path)))
    except _Bad as e:
        raise _error(e, "replace it with a good copy") from None


def _cifar_arrays(batches, to_float: bool = True):
    test_x, test_y = batches[CIFAR_TEST_BATCH]
    train_x = np.concatenate([batches[m][0] for m in CIFAR_TRAIN_BATCHES])
    train_y = np.concatenate([batches[m][1] for m in CIFAR_TRAIN_BATCHES])
    if to_float:
        train_x, test_x = _TO_FLOAT[train_x], _TO_FLOAT[test_x]
    return train_x, train_y, test_x, test_y


def _check_file(path: Path, filename: str, source: str) -> int:
    """Validate one present file of `source` (raises _Bad); returns its sample count (CIFAR: 60000)."""
    if filename == CIFAR_TARBALL:
        _load_cifar(path)
        return 60000
    return len(_load_idx(path, "images" if "images" in filename else "labels", (source, filename)))


# -- download --------------------------------------------------------------------------

class _BadDownload(Exception):
    pass


def _mirror_list(source: str, mirrors) -> list[str]:
    if mirrors is not None:
        return list(mirrors)
    env = os.environ.get(MIRROR_ENV, "").strip()
    if env:
        return [m.strip() for m in env.split(",") if m.strip()]
    return list(MIRRORS[source])


def _url(base: str, filename: str) -> str:
    return base if base.endswith(filename) else base.rstrip("/") + "/" + filename


def _get(url: str, dest: Path, filename: str, progress: bool) -> str:
    """Stream `url` into `dest`; returns the md5 hex digest. Raises on a short read."""
    from tqdm import tqdm

    digest = hashlib.md5()
    got = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(dest, "wb") as out:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=filename,
                  file=sys.stderr, disable=not progress) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got != total:
        raise _BadDownload(f"connection closed after {got} of {total} bytes")
    return digest.hexdigest()


def download_file(filename: str, folder: Path, mirrors: list[str], md5: str | None,
                  progress: bool = True) -> Path:
    """Download `filename` into `folder` from the first mirror that serves it with the right md5."""
    final = folder / filename
    tried, last = [], "no mirror configured"
    for base in mirrors:
        url = _url(base, filename)
        tried.append(url)
        for attempt in range(1, TRIES + 1):
            try:
                with atomic_path(final) as tmp:
                    digest = _get(url, tmp, filename, progress)
                    if md5 and digest != md5:
                        raise _BadDownload(f"md5 {digest} is not the published {md5}")
                return final
            except urllib.error.HTTPError as e:
                last = f"{url}: HTTP {e.code} {e.reason}"
                e.close()
                if 400 <= e.code < 500:
                    break  # the mirror does not have it; retrying will not help
            except (_BadDownload, urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                last = f"{url}: {reason}"
            if attempt < TRIES:
                time.sleep(BACKOFF_S * attempt)
    last = " ".join(str(last).split())
    raise DataError(f"could not download {filename} (tried {', '.join(tried)}; last error {last}); "
                    f"download it by hand and put it in {folder}")


# -- public entry points ---------------------------------------------------------------

def _pair_problems(paths: dict[str, Path], counts: dict[str, int]) -> list[_Bad]:
    """Label files whose count differs from their images'."""
    bad = []
    for images, labels in (_IDX_TRAIN, _IDX_TEST):
        if images in counts and labels in counts and counts[images] != counts[labels]:
            bad.append(_Bad(paths[labels], f"has {counts[labels]} labels but {paths[images].name} has "
                                           f"{counts[images]} images"))
    return bad


def verify(name: str, data_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """[(file path, "ok" or the problem)] for every file `name` needs; downloads nothing."""
    folder = dataset_dir(name, data_dir)
    report, paths, counts = {}, {}, {}
    for filename in FILES[name]:
        path = _present(folder, filename)
        if path is None:
            report[filename] = (str(folder / filename), "missing")
            continue
        paths[filename] = path
        try:
            counts[filename] = _check_file(path, filename, SOURCE[name])
            report[filename] = (str(path), "ok")
        except _Bad as e:
            report[filename] = (str(e.path), e.what + (f"; {e.hint}" if e.hint else ""))
    for bad in _pair_problems(paths, counts):
        filename = next(f for f, p in paths.items() if p == bad.path)
        report[filename] = (str(bad.path), bad.what)
    return list(report.values())


def fetch(name: str, data_dir: str | os.PathLike | None = None, progress: bool = True, *,
          mirrors: list[str] | None = None, md5: dict[str, str | None] | None = None) -> Path:
    """Download what `name` lacks, validate every file, return the dataset's folder.

    mirrors: base URLs replacing MIRRORS and $FLUXLENET_MIRROR; md5: {filename: md5 or None}
    replacing MD5 (a file absent from it or mapped to None is not md5-checked)."""
    source = _source(name)
    folder = dataset_dir(name, data_dir)
    urls = _mirror_list(source, mirrors)
    sums = MD5[source] if md5 is None else md5
    paths, counts = {}, {}
    for filename in FILES[name]:
        path = _present(folder, filename)
        hint = _redo_hint(name, data_dir)  # for a file the user already had
        if path is None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DataError(f"cannot create {folder} ({e.strerror or e}); choose another --data-dir") from None
            path = download_file(filename, folder, urls, sums.get(filename), progress)
            hint = "the download is damaged; delete it and fetch again"
        paths[filename] = path
        try:
            counts[filename] = _check_file(path, filename, source)
        except _Bad as e:
            raise _error(e, hint) from None
    for bad in _pair_problems(paths, counts):
        raise _error(bad, _redo_hint(name, data_dir))
    return folder


def _first(x: np.ndarray, y: np.ndarray, n: int | None, what: str, name: str):
    if n is None:
        return x, y
    if n < 1:
        raise DataError(f"{name}: {what} must be >= 1, not {n}")
    if n > len(y):
        raise DataError(f"{name}: {what} {n} is more than the {len(y)} samples there are")
    if n == len(y):
        return x, y
    return x[:n].copy(), y[:n].copy()  # a copy, so the full arrays can be freed


def _hold_out(y: np.ndarray, valid_size: int, seed: int, name: str) -> np.ndarray:
    """Sorted indices of a class-balanced validation set, valid_size/10 per class."""
    if valid_size % NCLASSES:
        raise DataError(f"{name}: valid_size {valid_size} must be a multiple of {NCLASSES} (balanced per class)")
    per_class = valid_size // NCLASSES
    rng = np.random.default_rng([seed, 2])
    picked = []
    for c in range(NCLASSES):
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise DataError(f"{name}: valid_size {valid_size} needs {per_class} samples of class {c}, "
                            f"the training set has {len(members)}")
        picked.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def _load_raw(name: str, paths: dict[str, Path]):
    """(train_x, train_y, test_x, test_y) before any split, images still uint8 (N, C, H, W), so that
    only the samples kept are converted to float32 (CIFAR-10 as float32 is 737 MB); raises _Bad."""
    if SOURCE[name] == "cifar10":
        return _cifar_arrays(_load_cifar(paths[CIFAR_TARBALL]), to_float=False)

    def pair(images, labels):
        x = _load_idx(paths[images], "images", (SOURCE[name], images))
        y = _load_idx(paths[labels], "labels", (SOURCE[name], labels))
        if len(x) != len(y):
            raise _Bad(paths[labels], f"has {len(y)} labels but {paths[images].name} has {len(x)} images")
        return x.reshape(len(x), 1, 28, 28), y.astype(np.int64)

    test_x, test_y = pair(*_IDX_TEST)
    if name == "mnist-t10k-split":
        if len(test_y) != 10000:
            raise _Bad(paths[_IDX_TEST[0]], f"has {len(test_y)} images, mnist-t10k-split needs the 10,000 "
                                            f"of the MNIST test set")
        return test_x[:8000], test_y[:8000], test_x[8000:], test_y[8000:]
    train_x, train_y = pair(*_IDX_TRAIN)
    return train_x, train_y, test_x, test_y


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, train_size: int | None = None,
                 test_size: int | None = None, valid_size: int = 0, seed: int = 0,
                 download: bool = True, progress: bool = True) -> Dataset:
    """Load `name` as float32 (N, C, H, W) arrays in [0, 1] and int64 labels.

    valid_size > 0 holds out that many training samples, valid_size/10 per class, drawn by
    np.random.default_rng([seed, 2]) from the full training set (class 0 first, then 1, ...);
    the rest keep their order, and the validation samples keep theirs. Then train_size /
    test_size keep the first N samples. "mnist-t10k-split" trains on the first 8,000 MNIST
    test images and tests on the last 2,000 (the valid split comes out of those 8,000)."""
    _source(name)
    if valid_size < 0:
        raise DataError(f"{name}: valid_size must be >= 0, not {valid_size}")
    folder = dataset_dir(name, data_dir)
    if any(_present(folder, f) is None for f in FILES[name]):
        if not download:
            missing = [str(folder / f) for f in FILES[name] if _present(folder, f) is None]
            raise DataError(f"missing {', '.join(missing)}; run {_fetch_hint(name, data_dir)} "
                            f"or put the files there by hand")
        fetch(name, data_dir, progress)
    paths = {f: _present(folder, f) for f in FILES[name]}
    try:
        train_x, train_y, test_x, test_y = _load_raw(name, paths)
    except _Bad as e:
        raise _error(e, _redo_hint(name, data_dir)) from None

    valid_x = valid_y = None
    if valid_size:
        held = _hold_out(train_y, valid_size, seed, name)
        keep = np.ones(len(train_y), dtype=bool)
        keep[held] = False
        valid_x, valid_y = train_x[held], train_y[held]
        train_x, train_y = train_x[keep], train_y[keep]
    train_x, train_y = _first(train_x, train_y, train_size, "train_size", name)
    test_x, test_y = _first(test_x, test_y, test_size, "test_size", name)
    return Dataset(train_x=_TO_FLOAT[train_x], train_y=train_y, test_x=_TO_FLOAT[test_x], test_y=test_y,
                   valid_x=None if valid_x is None else _TO_FLOAT[valid_x], valid_y=valid_y, name=name)
