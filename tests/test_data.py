import hashlib
import io
import json
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
import torch
import yaml

from resnet9 import cifar10, data
from resnet9.data import DataError

from conftest import committed_params, subprocess_env, tiny_arrays
from resnet9 import paths


def _npz(path, arrays):
    np.savez(path, **arrays)
    return path


# ---- sources -----------------------------------------------------------------------------

def test_missing_file_says_how_to_set_data_source(tmp_path):
    with pytest.raises(DataError, match=r"data.source: .*nope.npz.* is not a file.*cifar10.npz"):
        data.load_source(str(tmp_path / "nope.npz"))


def test_unknown_file_kind(tmp_path):
    (tmp_path / "cifar.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"not a URL, .tar.gz/.tgz or .npz"):
        data.load_source(str(tmp_path / "cifar.csv"))


def test_npz_round_trip(tmp_path):
    arrays = tiny_arrays()
    loaded = data.load_source(str(_npz(tmp_path / "c.npz", arrays)))
    assert all(np.array_equal(loaded[k], arrays[k]) for k in data.KEYS)


def test_truncated_npz(tmp_path):
    path = _npz(tmp_path / "c.npz", tiny_arrays())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"c.npz: not a readable .npz, truncated or corrupt"):
        data.load_source(str(path))


def test_npz_with_wrong_keys(tmp_path):
    arrays = tiny_arrays()
    arrays["images"] = arrays.pop("x_train")
    with pytest.raises(DataError, match=r"keys \['x_train'\] missing"):
        data.load_source(str(_npz(tmp_path / "c.npz", arrays)))


def _tarball(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_archive_md5_mismatch(tmp_path):
    path = _tarball(tmp_path / "cifar-10-python.tar.gz",
                    {"cifar-10-batches-py/data_batch_1": b"not a pickle"})
    with pytest.raises(DataError, match=r"md5 mismatch; expected c58f30108f718f92721af3b95e74349a"):
        data.load_source(str(path))


def test_truncated_archive(tmp_path):
    path = _tarball(tmp_path / "cifar-10-python.tar.gz", {"a": b"x" * 10_000})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="md5 mismatch"):
        data.load_source(str(path))


def test_unreachable_url_says_how_to_go_offline():
    with pytest.raises(DataError, match=r"cannot download .*Set data.source to a local.*"
                                        r"`make quick SOURCE=\.\./shared/data/cifar10\.npz`"):
        data.load_source("http://127.0.0.1:9/cifar-10-python.tar.gz")


# ---- checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, bad, message", [
    ("x_train", lambda a: a[:, :, :16], r"x_train has shape \(20, 32, 16, 3\); expected"),
    ("x_test", lambda a: a.astype(np.float32), r"x_test has dtype float32; expected uint8"),
    ("y_train", lambda a: a.astype(np.float64), r"y_train has shape .* expected \(N,\) integers"),
    ("y_test", lambda a: np.where(a == 3, 10, a), r"y_test has labels in \[0, 10\]; expected 0..9"),
    ("y_train", lambda a: a[:-1], r"x_train has 20 images but y_train 19 labels"),
])
def test_structural_checks(key, bad, message):
    arrays = tiny_arrays()
    arrays[key] = bad(arrays[key])
    with pytest.raises(DataError, match=message):
        data.check_cifar10(arrays, "src", full=False)


def test_full_check_wants_the_official_counts():
    with pytest.raises(DataError, match=r"train has 20 images; expected 50,000"):
        data.check_cifar10(tiny_arrays(), "src", full=True)


def test_full_check_wants_balanced_classes():
    arrays = {"x_train": np.zeros((50_000, 32, 32, 3), np.uint8),
              "y_train": np.repeat(np.arange(10), 5000).astype(np.uint8),
              "x_test": np.zeros((10_000, 32, 32, 3), np.uint8),
              "y_test": np.repeat(np.arange(10), 1000).astype(np.uint8)}
    data.check_cifar10(arrays, "src", full=True)
    arrays["y_test"][0] = 9
    with pytest.raises(DataError, match=r"test per-class counts \[999, .*1001\]; expected 1,000"):
        data.check_cifar10(arrays, "src", full=True)


# ---- subsets -----------------------------------------------------------------------------

def test_stratified_subset_keeps_class_proportions_and_is_seeded():
    y = np.repeat(np.arange(10), 100)
    idx = data.stratified_subset(y, 205, seed=1)
    assert len(idx) == 205 == len(np.unique(idx))
    counts = np.bincount(y[idx], minlength=10)
    assert counts.min() == 20 and counts.max() == 21
    assert np.array_equal(idx, data.stratified_subset(y, 205, seed=1))
    assert not np.array_equal(idx, data.stratified_subset(y, 205, seed=2))


def test_subset_larger_than_the_data():
    with pytest.raises(DataError, match=r"data.train_subset: 101 is more than the 100 images"):
        data.stratified_subset(np.arange(100) % 10, 101, 0, "data.train_subset")


# ---- the download stage ------------------------------------------------------------------

def _write_params(workdir, source, **data_params):
    """The project's params.yaml in ``workdir``, with ``data.source`` and ``data_params`` set."""
    doc = committed_params()
    doc["data"].update(source=str(source), **data_params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(doc))


def _run_download(tmp_path, source, **data_params):
    _write_params(tmp_path, source, **data_params)
    return subprocess.run([sys.executable, "-m", "stages.download"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=subprocess_env())


@pytest.mark.parametrize("defect", ["missing", "truncated", "labels", "counts"])
def test_download_stage_on_bad_data_fails_cleanly(tmp_path, defect):
    arrays = tiny_arrays()
    if defect == "labels":
        arrays["y_train"][0] = 12
    src = _npz(tmp_path / "c.npz", arrays)
    if defect == "missing":
        src.unlink()
    if defect == "truncated":
        src.write_bytes(src.read_bytes()[:100])
    proc = _run_download(tmp_path, src)
    assert proc.returncode == 1
    assert proc.stderr.startswith("download: error: ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_download_stage_writes_the_canonical_dataset(tmp_path, cifar_npz):
    proc = _run_download(tmp_path, cifar_npz, train_subset=1000, test_subset=500)
    assert proc.returncode == 0, proc.stderr
    train, test = data.load_dataset(tmp_path / paths.DATASET_DIR)
    assert (len(train), len(test)) == (1000, 500)
    assert np.bincount(train.y).tolist() == [100] * 10
    meta = yaml.safe_load((tmp_path / paths.META_FILE).read_text())
    assert meta["counts"] == {"train": 1000, "test": 500}
    assert meta["classes"][0] == "airplane" and str(cifar_npz) not in json.dumps(meta)
    assert meta["sha256"]["train"] == data.sha256_of(train.x, train.y.astype(np.uint8))
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar10"]  # no temporaries left


def _official_archive(path, arrays):
    """``arrays`` in the official archive's layout (pickled batches of channel-planar rows) as a
    .tar.gz; returns the md5 of each member and of the archive, for torchvision's checks."""
    batches = [(f"data_batch_{i + 1}", x, y) for i, (x, y) in enumerate(zip(
        np.array_split(arrays["x_train"], 5), np.array_split(arrays["y_train"], 5)))]
    batches.append(("test_batch", arrays["x_test"], arrays["y_test"]))
    members = {name: pickle.dumps({"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1),
                                   "labels": y.tolist()}) for name, x, y in batches}
    members["batches.meta"] = pickle.dumps({"label_names": list(cifar10.CLASSES)})
    _tarball(path, {f"cifar-10-batches-py/{k}": v for k, v in members.items()})
    md5 = {k: hashlib.md5(v).hexdigest() for k, v in members.items()}
    md5["archive"] = hashlib.md5(path.read_bytes()).hexdigest()
    return md5


def test_archive_and_npz_give_a_byte_identical_canonical_dataset(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    from stages import download

    # A synthetic CIFAR-10 of 50 / 20 images, in both formats. torchvision's md5s and the
    # official counts are patched to this dataset's; everything else is the real code path.
    arrays = tiny_arrays(n_train=50, n_test=20)
    md5 = _official_archive(tmp_path / "cifar-10-python.tar.gz", arrays)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5["archive"])
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    monkeypatch.setattr(data, "SPLIT_COUNTS", {"train": 50, "test": 20})
    sources = {"archive": tmp_path / "cifar-10-python.tar.gz",
               "npz": _npz(tmp_path / "c.npz", arrays)}

    written = {}
    for kind, source in sources.items():
        work = tmp_path / kind
        work.mkdir()
        _write_params(work, source)
        monkeypatch.chdir(work)
        download.main()
        written[kind] = {p.name: p.read_bytes() for p in (work / paths.DATASET_DIR).iterdir()}

    assert set(written["archive"]) == {paths.ARRAYS_FILE.name, paths.META_FILE.name}
    assert written["archive"] == written["npz"]  # same bytes, so the same DVC hash
    train, test = data.load_dataset(tmp_path / "archive" / paths.DATASET_DIR)
    assert np.array_equal(train.x, arrays["x_train"]) and np.array_equal(test.y, arrays["y_test"])
    # and no wall-clock time inside: numpy writes each zip entry with the fixed 1980 date
    with zipfile.ZipFile(tmp_path / "npz" / paths.ARRAYS_FILE) as npz:
        assert {info.date_time for info in npz.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_ddp_shares_are_disjoint_equal_mixed_and_dealt_anew_every_epoch():
    from resnet9.loaders import rank_share

    labels = np.sort(np.arange(1001) % 10)  # class-sorted, as CIFAR-10's archive is not
    epochs = []
    for epoch in range(2):
        shares = []
        for rank in range(2):
            s = rank_share(1001, rank, 2, seed=0)
            s.set_epoch(epoch)
            shares.append(list(s))
        a, b = map(set, shares)
        assert len(shares[0]) == len(shares[1]) == 500 and len(a) == 500 and not a & b
        assert all(len(np.unique(labels[share])) == 10 for share in shares)
        epochs.append(shares)
    assert set(epochs[0][0]) != set(epochs[1][0])  # each epoch deals a different share
    again = rank_share(1001, 0, 2, seed=0)
    again.set_epoch(1)
    assert list(again) == epochs[1][0]  # the same seed and epoch deal the same share


@pytest.mark.parametrize("backend", ["albumentations", "torch"])
def test_a_train_loader_with_a_ddp_share_yields_that_share_each_epoch(backend,
                                                                       committed_params_file):
    from resnet9 import loaders, params
    from resnet9.loaders import rank_share

    x = np.zeros((40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 10
    recipe = params.load("recipe", path=committed_params_file).model_copy(
        update={"batch_size": 8, "augment_backend": backend, "num_workers": 0, "seed": 3})
    share = rank_share(40, 1, 2, seed=3)  # what train_loader deals rank 1 of 2 at recipe.seed 3
    loader = loaders.train_loader(data.Split(x, y), recipe, torch.device("cpu"),
                                  torch.Generator().manual_seed(0), rank=1, world=2)
    assert len(loader) == 5  # 20 images of rank 1 in batches of 8 // 2
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        share.set_epoch(epoch)
        seen = np.concatenate([batch_y.numpy() for _, batch_y in loader])
        assert seen.tolist() == y[list(share)].tolist()
