"""The one place that says how Numba kernels are compiled."""

import numba

from ... import config

# Parallel kernels: prange over images/channels; cache=True so a second process loads machine
# code from __pycache__ instead of recompiling. fastmath stays off unless asked for, so float64
# results match the naive oracles and thread count only changes rounding.
kernel = numba.njit(parallel=True, cache=True, nogil=True, fastmath=config.get_fastmath())
# Serial helpers called from inside kernels (inlined by LLVM).
helper = numba.njit(cache=True, nogil=True, inline="always", fastmath=config.get_fastmath())
# Serial kernels for work too small to split across threads.
serial = numba.njit(cache=True, nogil=True, fastmath=config.get_fastmath())
