"""Mini-batch iteration over in-memory arrays: seeded shuffling, augmentation, normalisation, prefetch.

Reproducibility: the order of epoch ``k`` is a permutation drawn from
``SeedSequence([seed, k])`` and the augmentation generator of that epoch from
``SeedSequence([seed, k, 1])``, so any epoch can be replayed on its own (``set_epoch(k)``) and a
resumed run sees exactly the batches an uninterrupted one would. Prefetching changes when a batch
is prepared, never what it contains.
"""

from __future__ import annotations

import math
import queue
import threading

import numpy as np

from ._common import standardize

_DONE = object()


def os_seed() -> int:
    """A base seed drawn from the OS (``seed=None``): not reproducible, so store it to replay a run."""
    return int(np.random.SeedSequence().entropy % 2**63)


class DataLoader:
    """Iterate over ``(x, y)`` in mini-batches of float32 images.

    Parameters
    ----------
    x : numpy.ndarray, or a list/tuple of them (several inputs, as ``Model.fit`` takes them)
        Samples (N, C, H, W) (any leading-N array works). uint8 input is scaled to [0, 1]; other
        dtypes are converted to ``dtype``. A batch of several inputs is a list, one array per input.
    y : numpy.ndarray, or a list/tuple of them (several outputs)
        Targets (N, ...). Integer labels come out as int64; other targets keep their dtype.
    batch_size : int
        Samples per batch.
    shuffle : bool
        Draw a new permutation every epoch (default True); False keeps the stored order.
    seed : int, numpy.random.Generator or None
        Source of the base seed. A Generator is consumed once, at construction, for a base seed;
        None draws one from the OS (not reproducible).
    drop_last : bool
        Drop the final batch when it is smaller than ``batch_size``.
    transform : callable, optional
        ``transform(xb, rng) -> xb`` applied to each float32 batch before normalisation, e.g. a
        :class:`corenet.data.augment.Compose`; ``rng`` is the epoch's augmentation generator.
    normalize : (mean, std), optional
        Per-channel standardisation ``(xb - mean[c]) / std[c]`` applied last, in the [0, 1] scale.
    prefetch : bool
        Prepare the next batch in one background thread (queue of one batch). Exceptions raised
        there are re-raised in the consumer; leaving the loop early stops the thread.
    dtype : numpy dtype or None
        The float type of the input batches (default float32). ``None`` keeps float inputs as they
        are (``Model.fit`` wraps its arrays so: float64 stays float64); uint8 is then scaled to float32.

    Examples
    --------
    >>> import numpy as np
    >>> x, y = np.zeros((10, 1, 4, 4), np.uint8), np.arange(10)
    >>> loader = DataLoader(x, y, batch_size=4, seed=0, drop_last=True)
    >>> len(loader), [yb.shape for _, yb in loader]
    (2, [(4,), (4,)])
    """

    def __init__(self, x, y, batch_size, shuffle=True, seed=None, drop_last=False, transform=None,
                 normalize=None, prefetch=False, dtype=np.float32):
        xs = [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
        ys = [np.asarray(a) for a in y] if isinstance(y, (list, tuple)) else [np.asarray(y)]
        if not xs or not ys or any(a.ndim < 1 for a in xs + ys) or len({len(a) for a in xs + ys}) != 1:
            shapes = ", ".join(f"{name}.shape={a.shape}" for name, arrays in (("x", xs), ("y", ys)) for a in arrays)
            raise ValueError(f"DataLoader: x and y must have the same number of samples. Received: {shapes or 'none'}")
        x_in, x = x, xs[0]
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"DataLoader: batch_size must be a positive integer. Received: {batch_size!r}")
        if transform is not None and not callable(transform):
            raise ValueError(f"DataLoader: transform must be callable. Received: {transform!r}")
        if normalize is not None:
            if not (isinstance(normalize, (tuple, list)) and len(normalize) == 2):
                raise ValueError(f"DataLoader: normalize must be (mean, std) or None. Received: {normalize!r}")
            if x.ndim != 4:
                raise ValueError(f"DataLoader: normalize needs images (N, C, H, W). Received: x.shape={x.shape}")
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**63))
        elif seed is None:
            seed = os_seed()
        self._xs, self._ys, self._n = xs, ys, len(xs[0])
        self.x = xs if isinstance(x_in, (list, tuple)) else xs[0]  # as given: one array, or a list of them
        self.y = ys if isinstance(y, (list, tuple)) else ys[0]
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.transform, self.normalize, self.prefetch = transform, normalize, bool(prefetch)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self):
        n = self._n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch`` (to resume a run exactly)."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices of epoch ``epoch`` in the order they are served (int64, length N)."""
        n = self._n
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)])).permutation(n)

    def __iter__(self):
        """Iterate over one epoch (the current ``epoch``, which then advances by one)."""
        epoch = self.epoch
        self.epoch += 1
        return self.iterate(epoch)

    def iterate(self, epoch: int, rank: int = 0, size: int = 1):
        """The batches of epoch ``epoch`` (``epoch`` itself is left alone).

        With ``size > 1`` (data-parallel training, ``corenet.distributed``) each batch is rank
        ``rank``'s strided share ``batch[rank::size]`` of the global batch (possibly empty), and the
        transform draws from ``SeedSequence([seed, epoch, 1, rank])``.
        """
        batches = self._batches(epoch, int(rank), int(size))
        return _prefetch(batches) if self.prefetch else batches

    def _batches(self, epoch, rank=0, size=1):
        order = self.order(epoch)
        key = [self.seed, int(epoch), 1] if size == 1 else [self.seed, int(epoch), 1, rank]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        n, bs = len(order), self.batch_size
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            idx = order[start:start + bs]
            if size > 1:
                yield self._make_batch(idx[rank::size], rng)
            else:
                yield self._make_batch(idx if self.shuffle else slice(start, start + bs), rng)

    def _make_batch(self, idx, rng):
        fresh = not isinstance(idx, slice)  # fancy indexing copies already
        xbs = []
        for a in self._xs:
            xb = a[idx]
            if xb.dtype == np.uint8:
                xb = xb.astype(np.float32) * np.float32(1.0 / 255.0)
            else:  # always a fresh array: transforms may work in place
                dtype = self.dtype if self.dtype is not None else (xb.dtype if xb.dtype.kind == "f" else np.float32)
                xb = xb.astype(dtype, copy=not fresh)
            xbs.append(xb)
        if self.transform is not None:  # on the first input (the images)
            xbs[0] = self.transform(xbs[0], rng)
        if self.normalize is not None:
            xbs[0] = standardize(xbs[0], *self.normalize)
        ybs = []
        for a in self._ys:
            yb = a[idx]
            ybs.append(yb.astype(np.int64) if np.issubdtype(yb.dtype, np.integer) else np.array(yb))
        return (xbs if isinstance(self.x, list) else xbs[0]), (ybs if isinstance(self.y, list) else ybs[0])


def _prefetch(batches):
    """Run the generator ``batches`` one item ahead in a background thread."""
    q = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in batches:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer, re-raised there
            put((None, e))
        finally:
            batches.close()

    thread = threading.Thread(target=work, name="corenet-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:  # normal end, error, or the consumer left early (generator closed)
        stop.set()
        thread.join()
