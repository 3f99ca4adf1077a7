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


@kernel(inline="always")
def interp_even_point(xm, xs, v, x0, xn, inv):
    """``interp_even`` at one point (x0, xn the end nodes, inv = (n − 1)/(xn − x0))."""
    n = xs.shape[0]
    if xm != xm:
        return xm
    if xm <= x0:  # below the first node, or on it
        return v[0]
    if xm >= xn:
        return v[n - 1]
    j = min(max(int((xm - x0) * inv), 0), n - 2)
    while xs[j] > xm:
        j -= 1
    while xs[j + 1] <= xm:
        j += 1
    if xs[j] == xm:
        return v[j]
    return (v[j + 1] - v[j]) / (xs[j + 1] - xs[j]) * (xm - xs[j]) + v[j]


@kernel
def interp_even(x, xs, v, out):
    """out = np.interp(x, xs, v) bit for bit, for evenly spaced nodes ``xs`` (a uniform grid's centres): each
    point's bracket is guessed from the spacing and corrected to numpy's (xs[j] <= x < xs[j+1]), so no binary
    search; then numpy's formula. NaN points give NaN, points beyond the ends the end values, as in numpy."""
    n = xs.shape[0]
    x0 = xs[0]
    xn = xs[n - 1]
    inv = (n - 1) / (xn - x0) if n > 1 else 0.0
    for m in range(x.shape[0]):
        out[m] = interp_even_point(x[m], xs, v, x0, xn, inv)

@kernel
def bilinear_planned(v, i0, i1, w, out):
    """out[m] = scipy's RegularGridInterpolator (linear) sum over the cell's corners in its order, from 0:
    ((((0 + v[i0, i1]·w[0]) + v[i0, i1+1]·w[1]) + v[i0+1, i1]·w[2]) + v[i0+1, i1+1]·w[3]) at point m
    (``fpkit.estimators.series.BilinearPlan``: the same bits as its numpy sum)."""
    for m in range(out.shape[0]):
        a = i0[m]
        b = i1[m]
        acc = 0.0 + v[a, b] * w[0, m]
        acc = acc + v[a, b + 1] * w[1, m]
        acc = acc + v[a + 1, b] * w[2, m]
        out[m] = acc + v[a + 1, b + 1] * w[3, m]
