"""Fetching data files: cache directory, atomic download with md5 check, safe archive extraction.

A download streams into a temporary file in the destination directory, checks the byte count
against ``Content-Length`` and the md5 against the known checksum, fsyncs, and only then renames
the file into place, so a failed, interrupted or corrupted transfer never leaves a file behind
under the final name (and the temporary file is removed). Only ``urllib`` is used.
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

#: Environment variable overriding the cache directory (default ``~/.cache/corenet``).
CACHE_ENV = "CORENET_CACHE"
#: Environment variable overriding the base URL of every data set (a mirror holding the same file names).
URL_ENV = "CORENET_DATA_URL"


def default_cache_dir(cache_dir=None) -> Path:
    """Directory where downloaded data sets are kept.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Explicit choice; wins over everything else.

    Returns
    -------
    pathlib.Path
        ``cache_dir`` if given, else ``$CORENET_CACHE`` if set, else ``~/.cache/corenet``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "corenet"


def resolve_base_url(default: str, base_url: str | None = None) -> str:
    """Base URL to download from: ``base_url`` argument, else ``$CORENET_DATA_URL``, else ``default``.

    The result always ends with ``/`` so that file names can be appended.
    """
    url = base_url or os.environ.get(URL_ENV) or default
    return url if url.endswith("/") else url + "/"


def md5sum(path, chunk: int = 1 << 20) -> str:
    """Hex md5 digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on some platforms (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def download_file(url: str, dest, md5: str | None = None, *, timeout: float = 60.0,
                  progress: bool = False) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying length and md5.

    Parameters
    ----------
    url : str
        Source (http, https or file URL).
    dest : str or os.PathLike
        Final path. Its directory is created if needed.
    md5 : str, optional
        Expected hex md5 of the content; mismatch is an error.
    timeout : float
        Socket timeout in seconds.
    progress : bool
        Print a one-line progress indicator to stderr.

    Returns
    -------
    pathlib.Path
        ``dest``, complete and verified.

    Raises
    ------
    OSError
        The transfer failed or was cut short (fewer bytes than ``Content-Length``).
    ValueError
        The checksum did not match.

    Notes
    -----
    In every failure case the temporary file is deleted and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (urls are ours)
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length is not None else None
                    while True:
                        block = resp.read(1 << 16)
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        received += len(block)
                        if progress:
                            shown = f"{received / 2**20:.1f}" + (f"/{total / 2**20:.1f}" if total else "")
                            print(f"\rdownloading {dest.name}: {shown} MiB", end="", file=sys.stderr)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                raise OSError(f"download of {url} failed after {received} bytes: {e}") from e
            finally:
                if progress:
                    print(file=sys.stderr)
            if total is not None and received != total:
                raise OSError(f"download of {url} interrupted: received {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if md5 is not None and digest != md5.lower():
            raise ValueError(f"checksum mismatch for {url}: md5 {digest}, expected {md5}; file discarded")
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:  # KeyboardInterrupt included: never leave the partial file
        tmp.unlink(missing_ok=True)
        raise
    return dest


def extract_tar(archive, dest_dir) -> Path:
    """Extract a (gzip) tar archive into ``dest_dir``, refusing members that escape it; never deletes anything.

    The archive is first extracted in full into a temporary folder inside ``dest_dir``, then merged
    into ``dest_dir``: what is not there yet is moved in (a whole folder in one rename when it is new),
    a file that is already there with the same bytes is left as it is, and a path that is already
    there with other content (a different file, a file where the archive has a folder, or the other
    way round) stops the merge before anything is moved. Files of the user's that the archive does
    not hold are never touched, so re-extracting into a folder with the user's own files in it is safe.

    Parameters
    ----------
    archive : str or os.PathLike
        The ``.tar.gz`` file (e.g. ``cifar-10-python.tar.gz``).
    dest_dir : str or os.PathLike
        Target directory.

    Returns
    -------
    pathlib.Path
        ``dest_dir``.

    Raises
    ------
    ValueError
        The archive is corrupt or holds links, devices or paths outside ``dest_dir``.
    FileExistsError
        Paths the archive would write exist in ``dest_dir`` with other content; they are listed, and
        nothing was changed (move them away, or extract elsewhere).
    """
    dest_dir = Path(dest_dir).resolve()
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for m in members:
                    target = (staging / m.name).resolve()
                    if not (m.isfile() or m.isdir()) or staging not in target.parents:
                        raise ValueError(f"{archive}: refusing archive member {m.name!r}")
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - Python without PEP 706
                    tar.extractall(staging, members=members)  # noqa: S202 (members checked above)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{archive}: corrupt or truncated archive ({e})") from e
        moves, conflicts = _plan_merge(staging, dest_dir)
        if conflicts:
            shown = ", ".join(str(p) for p in conflicts[:10]) + (f" and {len(conflicts) - 10} more"
                                                                  if len(conflicts) > 10 else "")
            raise FileExistsError(f"extract_tar: {archive}: {len(conflicts)} path(s) in {dest_dir} differ from the "
                                  f"archive's and are kept as they are; nothing was extracted. Move them away or "
                                  f"extract elsewhere. Received: {shown}")
        for src, dst in moves:  # the finished tree goes into place; nothing in dest_dir is replaced
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        _fsync_dir(dest_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary folder only
    return dest_dir


def _plan_merge(staging: Path, dest_dir: Path):
    """``(moves, conflicts)``: the ``(source, target)`` renames that merge ``staging`` into ``dest_dir``
    without replacing anything, and the targets that exist with other content."""
    moves, conflicts = [], []
    pending = [Path()]
    while pending:
        rel = pending.pop()
        for item in sorted((staging / rel).iterdir()):
            target = dest_dir / rel / item.name
            if not os.path.lexists(target):
                moves.append((item, target))
            elif item.is_dir():
                if target.is_dir():
                    pending.append(rel / item.name)  # merge inside it
                else:
                    conflicts.append(target)
            elif not (target.is_file() and filecmp.cmp(item, target, shallow=False)):
                conflicts.append(target)
    return moves, conflicts
