"""Downloads against a loopback HTTP server on 127.0.0.1 (no test touches the internet)."""

import dataclasses
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import corenet.data.cifar as cifar_mod
from corenet.data import default_cache_dir, download_file, load_cifar10, load_mnist
from corenet.data.download import extract_tar

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; ``/cut/<name>`` announces the full length but closes after half the body."""

    def do_GET(self):
        if self.path.startswith("/cut/"):
            body = (Path(self.directory) / self.path[len("/cut/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served directory) of a server on an ephemeral loopback port."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _no_leftovers(directory: Path):
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")] if directory.exists() else []


def test_download_success_verifies_md5(server, tmp_path):
    url, served = server
    payload = np.random.default_rng(0).bytes(300_000)
    (served / "blob.bin").write_bytes(payload)
    dest = download_file(url + "blob.bin", tmp_path / "out" / "blob.bin", hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert _no_leftovers(dest.parent) == []


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    url, served = server
    (served / "blob.bin").write_bytes(b"corenet" * 1000)
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        download_file(url + "blob.bin", dest, "0" * 32)
    assert "blob.bin" in str(e.value)
    assert not dest.exists() and _no_leftovers(dest.parent) == []


def test_interrupted_transfer_leaves_no_file(server, tmp_path):
    url, served = server
    (served / "blob.bin").write_bytes(np.random.default_rng(1).bytes(200_000))
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(OSError, match="blob.bin"):
        download_file(url + "cut/blob.bin", dest)  # no md5: the length check alone must catch it
    assert not dest.exists() and _no_leftovers(dest.parent) == []


def test_missing_remote_file_is_an_error(server, tmp_path):
    url, _ = server
    dest = tmp_path / "out" / "nope.bin"
    with pytest.raises(OSError, match="404"):
        download_file(url + "nope.bin", dest)
    assert not dest.exists() and _no_leftovers(dest.parent) == []


def _serve_mnist(served: Path, sub="mnist"):
    (served / sub).mkdir()
    for f in (SHARED / "mnist").iterdir():
        shutil.copy(f, served / sub / f.name)


@needs_shared
def test_load_mnist_downloads_official_test_files(server, tmp_path):
    url, served = server
    _serve_mnist(served)
    root = tmp_path / "data"
    x, y = load_mnist(root, split="test", download=True, base_url=url + "mnist")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert sorted(p.name for p in root.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    # the served training files are a 10,000-image subset: their md5 is not the official one
    with pytest.raises(ValueError, match="checksum mismatch.*train-images-idx3-ubyte.gz"):
        load_mnist(root, split="train", download=True, base_url=url + "mnist")
    assert not (root / "train-images-idx3-ubyte.gz").exists() and _no_leftovers(root) == []
    # files present: no download needed (the server is not asked again)
    (served / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    x2, _ = load_mnist(root, split="test", download=True, base_url=url + "mnist")
    np.testing.assert_array_equal(x, x2)


@needs_shared
def test_cache_dir_and_base_url_from_environment(server, tmp_path, monkeypatch):
    url, served = server
    _serve_mnist(served)
    monkeypatch.setenv("CORENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CORENET_DATA_URL", url + "mnist/")
    assert default_cache_dir() == tmp_path / "cache"
    assert default_cache_dir(tmp_path / "other") == tmp_path / "other"
    x, _ = load_mnist(split="test", download=True)
    assert x.shape == (10000, 1, 28, 28)
    assert (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def _tar_gz(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cifar10_download_and_extract(server, tmp_path, monkeypatch):
    import pickle

    url, served = server
    rng = np.random.default_rng(0)
    members, ref = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = rng.integers(0, 256, (4, 3072), dtype=np.uint8), rng.integers(0, 10, 4)
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps({b"data": data, b"labels": labels.tolist()}, protocol=2)
        ref[name] = (data, labels)
    archive = _tar_gz(members)
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    spec = dataclasses.replace(cifar_mod.CIFAR10, archive_md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(cifar_mod, "CIFAR10", spec)
    x, y = load_cifar10(tmp_path / "c10", split="test", download=True, base_url=url)
    np.testing.assert_array_equal(x.reshape(4, -1), ref["test_batch"][0])
    np.testing.assert_array_equal(y, ref["test_batch"][1])
    assert (tmp_path / "c10" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert [p.name for p in (tmp_path / "c10").iterdir() if p.name.startswith(".")] == []
    # the archive kept in root is unpacked again without asking the server
    shutil.rmtree(tmp_path / "c10" / "cifar-10-batches-py")
    (served / "cifar-10-python.tar.gz").unlink()
    x2, _ = load_cifar10(tmp_path / "c10", split="test", download=True, base_url=url)
    np.testing.assert_array_equal(x, x2)


def test_extract_refuses_escaping_members(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_gz({"../escaped.txt": b"x"}))
    with pytest.raises(ValueError, match="refusing archive member"):
        extract_tar(archive, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()
    archive.write_bytes(_tar_gz({"ok.txt": b"x" * 1000})[:40])
    with pytest.raises(ValueError, match="corrupt or truncated archive"):
        extract_tar(archive, tmp_path / "dest")


def test_extract_never_deletes_the_users_files(tmp_path):
    dest = tmp_path / "root"
    mine = dest / "cifar-10-batches-py" / "my_notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("do not delete")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz({"cifar-10-batches-py/data_batch_1": b"batch", "readme.txt": b"hello"}))
    extract_tar(archive, dest)  # merged: the archive's files added, the user's kept
    assert mine.read_text() == "do not delete"
    assert (dest / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"batch"
    assert (dest / "readme.txt").read_bytes() == b"hello"
    extract_tar(archive, dest)  # again: identical files are left as they are
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py", "readme.txt"]
    # a file of the same name with other content is refused, and nothing is changed
    (dest / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"the user's own edit")
    (dest / "readme.txt").unlink()
    with pytest.raises(FileExistsError, match="data_batch_1") as e:
        extract_tar(archive, dest)
    assert str(archive) in str(e.value)
    assert (dest / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"the user's own edit"
    assert not (dest / "readme.txt").exists() and mine.read_text() == "do not delete"
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]  # no staging folder left
    # a file where the archive has a folder is refused too
    other = tmp_path / "other"
    other.mkdir()
    (other / "cifar-10-batches-py").write_text("a file, not a folder")
    with pytest.raises(FileExistsError, match="cifar-10-batches-py"):
        extract_tar(archive, other)
    assert (other / "cifar-10-batches-py").read_text() == "a file, not a folder"
