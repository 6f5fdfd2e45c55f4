"""Atomic writes: ``atomic_savez`` (temporary file, fsync, rename) and the clean-up of the temporaries of
killed writers (see :mod:`corenet.io`)."""

from __future__ import annotations

import os
import re
import socket
import tempfile

import numpy as np

__all__ = ["atomic_savez", "remove_stale_temporaries"]


def _host_tag() -> str:
    """This machine's name as it appears in temporary file names (no dots: they separate the fields)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _writer_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists on this machine (a process of another user exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, OverflowError):
        return False
    return False


def remove_stale_temporaries(path) -> list[str]:
    """Remove the temporaries of a save to ``path`` whose writer (this host, by pid) is gone.

    Temporaries are ``.<name>.<host>.<pid>.<random>.tmp`` (see :func:`atomic_savez`). Those of another
    host, of a live process, or without a writer in their name are left alone. Returns the removed paths.
    """
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix, host = "." + os.path.basename(path) + ".", _host_tag()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        fields = name[len(prefix):-len(".tmp")].split(".")
        if len(fields) != 3 or fields[0] != host or not fields[1].isdigit() or not fields[2]:
            continue
        pid = int(fields[1])
        if pid <= 0 or pid == os.getpid() or not _writer_gone(pid):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
        except OSError:  # removed by someone else meanwhile, or not ours to remove
            pass
    return removed


def atomic_savez(path, arrays: dict) -> None:
    """``np.savez(path, **arrays)`` through a temp file + fsync + rename; ``path`` is used as given.

    The temporary, ``.<name>.<host>.<pid>.<random>.tmp`` in the destination folder, names its writer;
    temporaries of earlier writers of ``path`` on this host that are no longer running are removed first.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    prefix = f".{os.path.basename(path)}.{_host_tag()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
