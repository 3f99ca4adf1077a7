"""The one place that holds numba's compile policy for every fpkit kernel.

``kernel`` caches to disk (a second process starts in seconds) and uses ``error_model='numpy'``, which
lets LLVM vectorise divisions. Parallel kernels use ``kernel(parallel=True)`` and ``prange`` only over
independent items, so results do not depend on the thread count.
"""

from __future__ import annotations

import ctypes
import functools
import os

import llvmlite.binding as llvm
import numba
from numba.np.ufunc import parallel as _parallel

# Stencil kernels read many arrays per store; LLVM vectorises such loops only behind runtime overlap checks and
# gives up beyond 8 of them by default (measured: the 2-D Fokker-Planck update at 8.8 ns/point scalar, 4.6
# vectorised). Raising the limits is process-wide and changes no result, only which loops get SIMD code.
# The merge threshold bounds the comparisons LLVM makes to merge the accesses of one array (constant offsets)
# into one checked range: the generated ensemble kernels' H·v back-propagation, two units per loop, needed
# more than 128 at d = 16, k = 4 ("too many memory checks needed": scalar, 72 vs 39 ns per member-sample).
llvm.set_option("", "--runtime-memory-check-threshold=128")
llvm.set_option("", "--memory-check-merge-threshold=1024")

_DEFAULTS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def kernel(fn=None, **options):
    """Compile ``fn`` with fpkit's numba policy; usable as ``@kernel`` or ``@kernel(parallel=True)``."""
    opts = {**_DEFAULTS, **options}
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


prange = numba.prange


def _libgomp():
    """GNU OpenMP if this process has loaded it already (torch does), else None; never loads it."""
    try:
        return ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
    except (OSError, AttributeError):
        return None


def _keeping_openmp_threads(launch):
    """``launch`` (numba's threading-layer start), leaving the calling thread's OpenMP thread count as it was.

    numba's OpenMP layer calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` once, when the first parallel
    kernel starts it; torch shares that libgomp and reads its intra-op thread count from the same setting, so
    a user's ``torch.set_num_threads(k)`` was lost at fpkit's first parallel kernel. numba passes its own
    count to every parallel region, so restoring the setting changes no numba result."""

    @functools.wraps(launch)
    def start():
        if _parallel._is_initialized:
            return launch()
        gomp = _libgomp()
        before = gomp.omp_get_max_threads() if gomp is not None else None
        try:
            return launch()
        finally:
            if before is not None and gomp.omp_get_max_threads() != before:
                gomp.omp_set_num_threads(before)

    return start


# numba looks the start function up in this module at every use (compilation, cached parfors, get_num_threads)
if not getattr(_parallel._launch_threads, "__wrapped__", None):
    _parallel._launch_threads = _keeping_openmp_threads(_parallel._launch_threads)


def threading_layer() -> str:
    """numba's threading layer ("omp", "tbb" or "workqueue"), started now if no parallel kernel has run yet
    (``numba.threading_layer()`` itself raises until one has)."""
    _parallel._launch_threads()
    return numba.threading_layer()
