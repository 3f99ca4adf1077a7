"""Linear interpolation at fixed points (``fpkit.estimators.series.InterpPlan``): numpy's ``np.interp`` formula
with the bracketing intervals found once, for points interpolated at every time step."""

from __future__ import annotations

from ._numba import kernel


@kernel
def interp_planned(v, pos, j, offset, width, node_pos, node, out):
    """out[pos] = (v[j+1] − v[j])/width·offset + v[j] (np.interp's own formula and order of operations, so bit
    for bit the same), out[node_pos] = v[node] (points on a node or beyond the ends)."""
    for m in range(pos.shape[0]):
        v0 = v[j[m]]
        out[pos[m]] = (v[j[m] + 1] - v0) / width[m] * offset[m] + v0
    for m in range(node_pos.shape[0]):
        out[node_pos[m]] = v[node[m]]
