"""corenet.distributed: shard(), the world of size 1 without MPI, and 2-rank runs under ``mpiexec``.

The MPI tests launch ``mpiexec -n 2 python tests/distributed_fit.py`` as a subprocess (timeout 120 s)
and compare with the same script run as one process. That script's model has no batch norm and no
dropout: batch norm normalises each rank's shard with the shard's own statistics and dropout draws
its masks per rank, so with either a 2-rank run is legitimately not the 1-process run; with
synchronised batch norm (``--syncbn``) it is the 1-process run again.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import corenet.distributed as dist
import corenet.distributed.fit as dist_fit
import corenet.distributed.world as dist_world
from corenet.data import DataLoader

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "distributed_fit.py"
MPIEXEC = shutil.which("mpiexec")
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or not HAVE_MPI4PY,
    reason="needs mpiexec and mpi4py (pip install corenet[mpi], i.e. mpi4py and the mpich wheel)")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in dist_world._LAUNCHER_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    env.setdefault("CORENET_NUM_THREADS", "1")
    return env


def _run(args, timeout=120, **env):
    proc = subprocess.run(args, env={**_env(), **env}, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.fixture
def single_world(monkeypatch):
    """A fresh world in a process not started by an MPI launcher."""
    for k in dist_world._LAUNCHER_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(dist_world, "_world", None)
    yield
    dist_world._world = None


# ------------------------------------------------------------------------------------ shard
@pytest.mark.parametrize("n,p", [(10, 2), (11, 2), (7, 3), (2, 4), (1, 1), (100, 7)])
def test_shard_is_distributed_sampler(n, p):
    shares = [dist.shard(n, 5, 3, rank=r, size=p) for r in range(p)]
    per = -(-n // p)
    assert all(len(s) == per and s.dtype == np.int64 for s in shares)  # same count on every rank
    order = np.random.default_rng(np.random.SeedSequence([5, 3])).permutation(n)  # fit's epoch order
    padded = np.resize(order, per * p)  # padded with the order's first indices
    for r, s in enumerate(shares):
        np.testing.assert_array_equal(s, padded[r::p])
    assert set(np.concatenate(shares)) == set(range(n))


def test_shard_unshuffled_and_epochs():
    np.testing.assert_array_equal(dist.shard(5, None, rank=1, size=2), [1, 3, 0])
    assert not np.array_equal(dist.shard(50, 1, 0, rank=0, size=2), dist.shard(50, 1, 1, rank=0, size=2))
    with pytest.raises(ValueError, match="shard"):
        dist.shard(5, 0, rank=2, size=2)
    with pytest.raises(ValueError, match="shard"):
        dist.shard(0, 0, rank=0, size=1)


def test_loader_shares_cover_the_global_batches():
    x, y = np.arange(11 * 2, dtype=np.float32).reshape(11, 2), np.arange(11)
    loader = DataLoader(x, y, batch_size=5, seed=3)
    whole = [yb for _, yb in loader.iterate(1)]
    shares = [[yb for _, yb in loader.iterate(1, r, 3)] for r in range(3)]
    for i, batch in enumerate(whole):
        np.testing.assert_array_equal(np.sort(np.concatenate([s[i] for s in shares])), np.sort(batch))
        np.testing.assert_array_equal(shares[1][i], batch[1::3])
    assert len(shares[2][-1]) == 0  # the last batch (1 sample) leaves rank 2 nothing: it still steps


# ------------------------------------------------------------------------ world of size 1
def test_world_of_size_one_without_launcher(single_world):
    world = dist.init()
    assert world == {"comm": None, "rank": 0, "size": 1}
    assert (dist.rank(), dist.size(), dist.is_main()) == (0, 1, True)
    dist.barrier()
    a = np.arange(6.0).reshape(2, 3)
    assert dist.allreduce_mean_([a], weight=3) == 3.0
    np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))
    assert dist.broadcast_object({"x": 1}) == {"x": 1}
    assert dist_fit.fit_callbacks([1, 2]) == [1, 2]
    assert dist_fit.eval_reduce(2.0, 3, [[1.0, 3]]) == (2.0, 3, [[1.0, 3]])


def test_rank_initialises_lazily(single_world):
    assert dist_world._world is None
    assert dist.size() == 1 and dist_world._world is not None


def test_mpi4py_is_not_imported_without_launcher():
    code = ("import sys, corenet, corenet.distributed as d; d.init(); "
            "print(d.size(), 'mpi4py' in sys.modules)")
    proc = _run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "False"]


# ------------------------------------------------------------------------------ 2 ranks
def _fit_once(tmp_path, name, mpi, *extra):
    out = str(tmp_path / f"{name}.npz")
    cmd = [sys.executable, str(SCRIPT), out, *extra]
    if mpi:
        cmd = [MPIEXEC, "-n", "2", *cmd]
    proc = _run(cmd)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@needs_mpi
@pytest.mark.parametrize("mode,tol", [("float64", 1e-10), ("loader", 1e-5)])
def test_two_ranks_equal_one_process(tmp_path, mode, tol):
    """101 samples, global batch 16 (last batch 5: 3 + 2), two epochs, SGD with momentum, validation,
    evaluate and predict: the 2-rank run ends with the 1-process run's weights, history and outputs.
    The script also checks the ranks hold bitwise-equal weights and the full prediction."""
    extra = ["--loader"] if mode == "loader" else []
    one = _fit_once(tmp_path, "one", False, *extra)
    two = _fit_once(tmp_path, "two", True, *extra)
    assert int(one["size"]) == 1 and int(two["size"]) == 2
    keys = sorted(k for k in one if k != "size")
    assert keys == sorted(k for k in two if k != "size")
    assert any(k.startswith("w/") for k in keys)
    for k in keys:
        if mode == "float64":
            np.testing.assert_allclose(two[k], one[k], rtol=0, atol=tol, err_msg=k)
        else:
            np.testing.assert_allclose(two[k], one[k], rtol=tol, atol=tol, err_msg=k)
    assert not np.array_equal(two["w/linear.weight"], one["w/linear.weight"] * 0)  # trained, not zero
    assert (tmp_path / "two.npz.rank0.csv").exists()  # CSVLogger on rank 0 only
    assert not (tmp_path / "two.npz.rank1.csv").exists()


@needs_mpi
@pytest.mark.parametrize("extra", [[], ["--syncbn"]])
def test_two_ranks_with_small_buckets_equal_one_process(tmp_path, extra):
    """CORENET_BUCKET_MB=0.0005 (524 bytes: 3 buckets of float64 gradients, the batch norms' sharing
    theirs with the convolutions'): every bucket's Iallreduce starts during backward, and the result
    is still the 1-process run's, in float64."""
    one = _fit_once(tmp_path, "one", False, *extra)
    out = str(tmp_path / "two.npz")
    cmd = [MPIEXEC, "-n", "2", sys.executable, str(SCRIPT), out, *extra]
    proc = _run(cmd, CORENET_BUCKET_MB="0.0005")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    found = re.search(r"buckets (\d+) started-during-backward (\d+)", proc.stdout)
    assert found, proc.stdout
    n, early = int(found[1]), int(found[2])
    assert n == 3 and early == n  # several buckets, all started before backward ended
    with np.load(out) as f:
        two = {k: f[k] for k in f.files}
    keys = sorted(k for k in one if k != "size")
    assert keys == sorted(k for k in two if k != "size") and int(two["size"]) == 2
    for k in keys:
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-10, err_msg=k)


@needs_mpi
def test_bucket_size_setting(monkeypatch):
    monkeypatch.delenv("CORENET_BUCKET_MB", raising=False)
    assert dist_fit.bucket_bytes() == 25 * 2 ** 20
    monkeypatch.setenv("CORENET_BUCKET_MB", "0.5")
    assert dist_fit.bucket_bytes() == 2 ** 19
    for bad in ("0", "-1", "x", "inf"):
        monkeypatch.setenv("CORENET_BUCKET_MB", bad)
        with pytest.raises(ValueError, match="CORENET_BUCKET_MB"):
            dist_fit.bucket_bytes()


@needs_mpi
def test_a_failing_rank_ends_the_job():
    code = ("import corenet.distributed as d; d.init(); d.barrier()\n"
            "if d.rank() == 1: raise RuntimeError('rank one fails')\n"
            "d.barrier()")
    proc = _run([MPIEXEC, "-n", "2", sys.executable, "-c", code], timeout=60)  # a hang would time out
    assert proc.returncode != 0
    assert "rank one fails" in proc.stderr + proc.stdout


@needs_mpi
def test_two_ranks_with_batch_norm_agree(tmp_path):
    """With batch norm each rank normalises its shard with the shard's statistics, so the run is close
    to, not equal to, the 1-process run; the ranks still hold the same weights and (averaged after
    every epoch) running statistics: the script asserts it bitwise."""
    one = _fit_once(tmp_path, "one", False, "--bn")
    two = _fit_once(tmp_path, "two", True, "--bn")
    assert int(two["w/batch_norm2d.num_batches_tracked"]) == 14  # 2 epochs x 7 steps
    assert not np.allclose(two["w/batch_norm2d.running_mean"], one["w/batch_norm2d.running_mean"], rtol=0,
                           atol=1e-10)
    np.testing.assert_allclose(two["h/loss"], one["h/loss"], atol=0.05)


@needs_mpi
def test_two_ranks_with_sync_batch_norm_equal_one_process(tmp_path):
    """SyncBatchNorm (BatchNorm2d before a ReLU: the fused path, and a BatchNorm1d) over 2 ranks, global
    batch 16 with an uneven last batch (3 + 2), float64: the weights, running statistics, history,
    evaluation and prediction of one process with plain batch norm."""
    one = _fit_once(tmp_path, "one", False, "--syncbn")
    two = _fit_once(tmp_path, "two", True, "--syncbn")
    keys = sorted(k for k in one if k != "size")
    assert keys == sorted(k for k in two if k != "size")
    assert "w/batch_norm1d.running_var" in keys and "w/batch_norm2d.weight" in keys
    for k in keys:
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-10, err_msg=k)
    assert int(two["w/batch_norm2d.num_batches_tracked"]) == 14
    assert not np.allclose(two["w/batch_norm2d.running_mean"], 0)


@needs_mpi
def test_sync_batch_norm_refuses_a_rank_without_samples():
    """5 samples, global batch 4: the last batch (1 sample) leaves rank 1 none; with sync batch norm that
    rank would skip the collectives, so fit stops every rank with a message instead of hanging."""
    code = ("import numpy as np, corenet.distributed as d\n"
            "from corenet import Input, Model, layers as L, optim\n"
            "d.init(); x = Input((3,), dtype=np.float64)\n"
            "m = Model(x, L.Linear(2)(L.BatchNorm1d(sync=True)(L.Linear(4)(x))), seed=0)\n"
            "m.compile(optim.SGD(lr=0.1), 'cross_entropy')\n"
            "m.fit(np.ones((5, 3)) * np.arange(5)[:, None], np.arange(5) % 2, batch_size=4, epochs=1, "
            "shuffle=False, verbose=0)")
    proc = _run([MPIEXEC, "-n", "2", sys.executable, "-c", code], timeout=60)
    assert proc.returncode != 0
    assert "synchronised batch norm needs samples on every one of the 2 ranks" in proc.stderr + proc.stdout


@needs_mpi
@pytest.mark.parametrize("extra", [(), ("--dropout",)], ids=["plain", "dropout"])
def test_two_ranks_resume_exactly_from_rank_zero_checkpoint(tmp_path, extra):
    """1 epoch, stop, resume to 2 epochs (a new mpiexec job; rank 1 is given a path that does not
    exist, so it resumes from rank 0's broadcast checkpoint) == 2 epochs in one job, bitwise; with
    dropout too (each rank's mask stream is derived from (seed, epoch, layer, rank))."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _fit_once(tmp_path / "a", "run", True, "--resume", "2", *extra)
    _fit_once(tmp_path / "b", "run", True, "--resume", "1", *extra)
    assert (tmp_path / "b" / "run.npz.ckpt.npz").exists()
    assert not (tmp_path / "b" / "run.npz.nowhere").exists()  # only rank 0 writes checkpoints
    resumed = _fit_once(tmp_path / "b", "run", True, "--resume", "2", *extra)
    for k in whole:
        if k.startswith(("w/", "pred", "e/")):
            np.testing.assert_array_equal(resumed[k], whole[k], err_msg=k)


@needs_mpi
def test_allreduce_mean_weighted_two_ranks():
    """Custom loops: allreduce_mean_ averages in place (float32 and float64 mixed: one float64 buffer)."""
    code = ("import numpy as np, corenet.distributed as d; d.init(); r = d.rank()\n"
            "a = np.full((2, 3), r + 1.0, np.float32); b = np.full(4, 10.0 * (r + 1))\n"
            "total = d.allreduce_mean_([a, b], weight=r + 1)  # weights 1 and 2\n"
            "assert total == 3.0 and a.dtype == np.float32, (total, a.dtype)\n"
            "np.testing.assert_allclose(a, (1 * 1 + 2 * 2) / 3); np.testing.assert_allclose(b, (10 + 40) / 3)\n"
            "c = np.full(2, float(r)); d.allreduce_mean_([c]); np.testing.assert_array_equal(c, 0.5)\n"
            "print(f'<ok {r}>', flush=True)")
    proc = _run([MPIEXEC, "-n", "2", sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # mpiexec merges the ranks' output streams: lines may run together, tokens do not
    assert sorted(re.findall(r"<ok (\d)>", proc.stdout)) == ["0", "1"], proc.stdout


@needs_mpi
def test_command_line_training_under_mpiexec(tmp_path):
    """``mpiexec -n 2 corenet train ...``: one report and one checkpoint (rank 0), a model that loads."""
    ckpt = tmp_path / "lenet.npz"
    proc = _run([MPIEXEC, "-n", "2", sys.executable, "-m", "corenet", "train", "--model", "lenet5", "--data", "bundled",
                 "--epochs", "1", "--batch-size", "128", "--checkpoint", str(ckpt)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("test accuracy") == 1
    assert proc.stdout.count("saved checkpoint") == 1
    import corenet

    model = corenet.load(str(ckpt))
    assert model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


# ------------------------------------------------------------------ synchronised batch norm, 1 process
def _bn_net(sync, seed=4):
    from corenet import Input, Model
    from corenet import layers as L

    x = Input((3, 5, 5), dtype=np.float64)
    h = L.ReLU()(L.BatchNorm2d(sync=sync)(L.Conv2d(4, 3, padding=1)(x)))  # BN -> ReLU: the fused path
    h = L.BatchNorm2d(sync=sync, affine=False)(L.Conv2d(4, 3)(h))  # BN alone: the plain path
    h = L.BatchNorm1d(sync=sync)(L.Flatten()(h))
    return Model(x, L.Linear(2)(h), seed=seed)


def test_sync_batch_norm_in_one_process_is_plain_batch_norm(single_world):
    from corenet import optim

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((21, 3, 5, 5)) * 3 + 2, rng.integers(0, 2, 21)
    runs = []
    for sync in (False, True):
        model = _bn_net(sync)
        model.compile(optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
        hist = model.fit(x, y, batch_size=8, epochs=2, seed=1, verbose=0)
        runs.append((model.state_dict(), hist.history["loss"], model.predict(x)))
    (w0, l0, p0), (w1, l1, p1) = runs
    assert w0.keys() == w1.keys()
    for k in w0:
        np.testing.assert_array_equal(w1[k], w0[k], err_msg=k)  # bit for bit
    assert l0 == l1
    np.testing.assert_array_equal(p1, p0)


def test_sync_flag_in_config_and_convert_sync_batchnorm(single_world, tmp_path):
    import corenet
    from corenet import layers as L

    assert "sync" not in L.BatchNorm2d(4).get_config()  # plain batch norm's config is unchanged
    layer = L.BatchNorm1d(3, sync=True)
    assert layer.get_config()["sync"] is True
    assert L.BatchNorm1d.from_config(layer.get_config()).sync is True
    with pytest.raises((TypeError, ValueError), match="sync"):
        L.BatchNorm2d(sync="yes")
    model = _bn_net(False)
    assert dist.convert_sync_batchnorm(model) is model
    bns = [la for la in model.layers if isinstance(la, (L.BatchNorm1d, L.BatchNorm2d))]
    assert len(bns) == 3 and all(la.sync for la in bns)
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = corenet.load(path)
    assert [la.sync for la in loaded.layers if isinstance(la, (L.BatchNorm1d, L.BatchNorm2d))] == [True] * 3
    x = np.random.default_rng(1).standard_normal((4, 3, 5, 5))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@needs_mpi
def test_ranks_draw_their_own_dropout_masks(tmp_path):
    """Dropout under 2 ranks: each rank's layer generator is its own stream (derived from the seed,
    the epoch, the layer and the rank), and the ranks still end with the same weights."""
    proc = _run([MPIEXEC, "-n", "2", sys.executable, str(SCRIPT),
                 str(tmp_path / "d.npz"), "--dropout"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = dict(re.findall(r"<dropout (\d) (\d+)>", proc.stdout))
    assert set(states) == {"0", "1"} and states["0"] != states["1"], proc.stdout


def test_reseed_layers_is_a_function_of_seed_epoch_layer_and_rank():
    from corenet import models

    model = models.alexnet(num_classes=10)  # two dropout layers
    assert dist_fit.reseed_layers(model, 7, 1, 0) == 2
    a = [la.rng.random() for la in model.layers if hasattr(la, "rng") and la.rng is not None]
    dist_fit.reseed_layers(model, 7, 1, 0)
    assert [la.rng.random() for la in model.layers if hasattr(la, "rng") and la.rng is not None] == a
    dist_fit.reseed_layers(model, 7, 1, 1)
    b = [la.rng.random() for la in model.layers if hasattr(la, "rng") and la.rng is not None]
    assert len(set(a) | set(b)) == 4  # other rank, other streams; the two layers differ too


@needs_mpi
@pytest.mark.parametrize("extra", [(), ("--syncbn",)], ids=["no-bn", "sync-bn"])
def test_mnist_two_ranks_equal_one_process(tmp_path, extra):
    """The issue's check: 1,024 real digits, global batch 64, two epochs, float64: 2 ranks end with
    one process's weights (below 1e-10), without batch norm and with synchronised batch norm."""
    script = str(HERE / "distributed_mnist.py")
    outs = {}
    for name, cmd in (("one", [sys.executable, script]), ("two", [MPIEXEC, "-n", "2", sys.executable, script])):
        out = str(tmp_path / f"{name}.npz")
        proc = _run([*cmd, out, *extra])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with np.load(out) as f:
            outs[name] = {k: f[k] for k in f.files}
    assert outs["one"].keys() == outs["two"].keys()
    for k, v in outs["one"].items():
        np.testing.assert_allclose(outs["two"][k], v, rtol=0, atol=1e-10, err_msg=k)
