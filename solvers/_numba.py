"""The one place that holds numba's compile policy for every fpkit kernel.

``kernel`` caches to disk (a second process starts in seconds) and uses ``error_model='numpy'``, which
lets LLVM vectorise divisions. Parallel kernels use ``kernel(parallel=True)`` and ``prange`` only over
independent items, so results do not depend on the thread count.
"""

from __future__ import annotations

import numba

_DEFAULTS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def kernel(fn=None, **options):
    """Compile ``fn`` with fpkit's numba policy; usable as ``@kernel`` or ``@kernel(parallel=True)``."""
    opts = {**_DEFAULTS, **options}
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


prange = numba.prange
