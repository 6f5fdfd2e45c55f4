"""Run small kernels on one thread.

A parallel region wakes every worker thread and waits for all of them at its end. That costs a
few microseconds on an idle machine, but on a busy one (CI, several processes sharing the cores)
a worker may wait a whole scheduler time slice before it runs: a ReLU of 7,680 elements took a
median of 16 ms with 2 threads and 10 us with one. ``@sized(cost)`` wraps a parallel kernel so
that, when ``first_argument.size * cost`` is below ``config.get_parallel_threshold()`` (the
threshold the Cython backend's ``threads_for`` reads too), it runs with one thread (its parallel
loops then execute on the calling thread, with no wake-up). Results do not change: every
kernel's arithmetic is independent of the thread count.

The thread count is set from Python around the call: calling ``numba.set_num_threads`` inside a
kernel would embed a ctypes pointer and make the kernel uncacheable.
"""

import functools

import numba

from ... import config


def sized(cost: int = 1):
    """Decorator for a Numba kernel: one thread when ``args[0].size * cost`` is below the threshold.

    ``cost`` is the work per element in units of one simple float operation (~8 for a kernel
    evaluating exp, erf or tanh per element).
    """

    def wrap(kernel):
        @functools.wraps(kernel.py_func)
        def run(*args):
            if args[0].size * cost >= config.get_parallel_threshold():
                return kernel(*args)
            n = numba.get_num_threads()
            if n == 1:
                return kernel(*args)
            numba.set_num_threads(1)
            try:
                return kernel(*args)
            finally:
                numba.set_num_threads(n)

        run.kernel = kernel  # the Numba dispatcher itself
        return run

    return wrap
