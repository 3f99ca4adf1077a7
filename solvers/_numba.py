"""The one place that holds numba's compile policy for every fpkit kernel.

``kernel`` caches to disk (a second process starts in seconds) and uses ``error_model='numpy'``, which
lets LLVM vectorise divisions. Parallel kernels use ``kernel(parallel=True)`` and ``prange`` only over
independent items, so results do not depend on the thread count.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba

# Stencil kernels read many arrays per store; LLVM vectorises such loops only behind runtime overlap checks and
# gives up beyond 8 of them by default (measured: the 2-D Fokker-Planck update at 8.8 ns/point scalar, 4.6
# vectorised). Raising the limits is process-wide and changes no result, only which loops get SIMD code.
llvm.set_option("", "--runtime-memory-check-threshold=128")
llvm.set_option("", "--memory-check-merge-threshold=128")

_DEFAULTS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def kernel(fn=None, **options):
    """Compile ``fn`` with fpkit's numba policy; usable as ``@kernel`` or ``@kernel(parallel=True)``."""
    opts = {**_DEFAULTS, **options}
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


prange = numba.prange
