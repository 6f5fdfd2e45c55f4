"""Data-parallel training over MPI (mpi4py), optional: ``pip install corenet[mpi]``.

::

    mpiexec -n 4 python train.py            # 4 processes ("ranks") on this machine

    import corenet.distributed as dist
    dist.init()                             # MPI world; a no-op world of size 1 without mpiexec
    model.fit(x, y, batch_size=256, epochs=30, seed=0)   # batch_size is the GLOBAL batch
    if dist.is_main(): model.save("final.npz")

mpi4py is imported only by :func:`init`, and only when the process was started by an MPI launcher
(``mpiexec``/``mpirun``/``srun`` set ``PMI_*``, ``OMPI_COMM_WORLD_*``, ``PMIX_RANK`` ...); otherwise,
or when mpi4py is not installed, the world is a single process and every function here is a no-op.
:func:`rank` and :func:`size` call :func:`init` on first use, so a script that never calls it still
runs data-parallel under ``mpiexec``. The world is process-wide state (MPI is), kept in this module.

What ``Model.fit`` does when ``size() > 1`` (the seam is ``corenet.distributed.fit.FitSync``, called
from the training loop):

- the seed (``seed=None``: drawn on rank 0) is broadcast, and every rank draws the same epoch
  permutation ``SeedSequence([seed, epoch])`` as a single process would; each global batch
  ``order[i*B:(i+1)*B]`` is split by striding, rank ``r`` taking ``batch[r::size]``. So every step's
  global batch is the same set of samples as in a one-process run, an uneven batch (the last one, or
  any ``B`` not divisible by the ranks) gives some ranks one sample more, and a rank may get none.
- rank 0's weights, buffers and optimizer state are broadcast at the start of ``fit``.
- each step: local forward/backward on the rank's share; every gradient, multiplied by the rank's
  sample count ``m_r``, is summed over the ranks in flat buckets (``distributed.fit.GradBuckets``, about
  ``CORENET_BUCKET_MB`` = 25 MiB each, filled in the order backward completes the layers): a bucket's
  non-blocking ``Iallreduce`` starts as soon as its last gradient is stored, so communication overlaps
  the rest of backward; then one small ``Iallreduce`` of the loss times ``m_r``, ``m_r`` and the metric
  sums, and one ``Waitall``. Dividing by ``M = sum m_r`` gives exactly the gradient of the mean-reduced
  loss over the global batch (up to float summation order), whatever the split. The sums are
  element-wise, so the bucket size changes no result.
- after each epoch the batch-norm running statistics are averaged over the ranks (``average_buffers``).
- synchronised batch norm (``BatchNorm2d(..., sync=True)``, or :func:`convert_sync_batchnorm`) takes
  the training statistics over the global batch (see :func:`batch_norm_reducer`); ``fit`` then
  requires every rank to have samples in every step (a global batch of at least ``size()``).
- loss and metrics are global; the progress bar, ``ModelCheckpoint``, ``CSVLogger`` and the
  ``resume`` checkpoint run on rank 0 only; resuming, rank 0 reads the checkpoint and broadcasts
  it (other hosts need no copy).
- ``evaluate`` (and validation) shards the samples ``r::size`` and reduces the sums;
  ``predict`` computes a contiguous block per rank and all-gathers it, so EVERY rank returns the
  full result.
- a transform/augmentation draws from ``SeedSequence([seed, epoch, 1, rank])`` on rank ``r``;
- every layer with a generator of its own (``Dropout``: ``layer.rng``) draws, during epoch
  ``epoch``, from ``SeedSequence([seed, epoch, 2, i, rank])`` (``i``: its index in
  ``model.layers``), set at each epoch's start (``reseed_layers``): ranks draw independent masks
  for their different samples, and a run resumed at an epoch boundary draws what the uninterrupted
  run drew.

Equality with a one-process run (same seed, up to float summation order) holds for models without
batch norm or with synchronised batch norm (plain batch norm computes its statistics over each
rank's shard, not the global batch, so the forward pass itself differs), without dropout (the
masks come from the per-rank streams above, not from the one-process stream) and without
augmentation.

Collectives: ``fit``, ``evaluate`` and ``predict`` must be called on every rank with the same
arguments (``if dist.is_main(): model.evaluate(...)`` would wait forever). Host (numpy) models only.

Layout: ``world.py`` (joining the world, rank, size, ``shard``), ``collectives.py`` (averaging and
broadcasting host arrays), ``sync_bn.py`` (synchronised batch norm) sit on corenet's lowest floor
and know no corenet class; ``fit.py`` (the per-step gradient buckets and the hooks ``fit``,
``evaluate`` and ``predict`` call) sits on the training floor and is imported by the training loop,
not by this package.
"""

from __future__ import annotations

from .collectives import allreduce_gradients, allreduce_mean_, average_buffers, broadcast_params
from .sync_bn import batch_norm_reducer, convert_sync_batchnorm
from .world import barrier, broadcast_object, init, is_main, rank, shard, size

__all__ = ["init", "rank", "size", "is_main", "barrier", "allreduce_mean_", "broadcast_params",
           "broadcast_object", "allreduce_gradients", "average_buffers", "shard", "convert_sync_batchnorm",
           "batch_norm_reducer"]
