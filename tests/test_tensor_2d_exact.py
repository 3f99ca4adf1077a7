"""The full 2-D diffusion tensor, component by component, against exact references (issue 23, item 7).

Three places carry the 2×2 tensor: the mechanistic and Kramers-Moyal estimators (``mechanistic_2d``,
``kramers_moyal_2d``) and the finite-volume FP's mixed-derivative operator. Each is checked here on D_xx, D_yy
and D_xy separately, with an order fit where a discretisation error exists, and tolerances a few times the
achieved error — so that a tensor whose off-diagonal entry is 3 % off (D_xy = 0.145 instead of 0.15) fails.
"""

import numpy as np
import pytest

import fpkit
from fpkit import estimators as E


def _lattice(n=21, lo=-2.0, hi=2.0):
    """Members on a regular n×n lattice of w0 (exact symmetric design: local-linear fits of polynomials of
    degree ≤ 1 are exact, and of a quadratic carry the pure h² bias)."""
    a = np.linspace(lo, hi, n)
    X, Y = np.meshgrid(a, a, indexing="ij")
    return np.stack([X.ravel(), Y.ravel()], axis=1)


def _four_point_noise(S):
    """Four increments ±a, ±b with (1/4) Σ ξ ξᵀ = S exactly and Σ ξ = 0: a, b the columns of √2·chol(S)."""
    L = np.sqrt(2.0) * np.linalg.cholesky(S)
    return np.array([L[:, 0], -L[:, 0], L[:, 1], -L[:, 1]])


S_TRUE = np.array([[0.4, 0.15], [0.15, 0.3]])  # the tensor of the FP test below, as (co)variances per step


def test_kramers_moyal_2d_returns_every_tensor_component_exactly_on_an_exact_design():
    """Every lattice point carries four members whose increments are A(w0)Δt + ξ, ξ ∈ {±a, ±b} with exact
    covariance 2Δt·D and zero mean. The local-linear fit of Δw is then exactly the (linear) A·Δt, the residuals
    are exactly ξ, and their products average to 2Δt·D at every point: D_xx, D_yy and D_xy must come back to
    round-off (measured ≤ 1e-14 relative; asserted 1e-10, while D_xy = 0.145 for 0.15 is 3e-2 off)."""
    dt = 0.05
    D = S_TRUE
    Th = np.array([[1.0, 0.5], [-0.2, 2.0]])
    base = _lattice()
    xi = _four_point_noise(2 * dt * D)
    w0 = np.repeat(base, 4, axis=0)
    w1 = w0 - dt * w0 @ Th.T + np.tile(xi, (base.shape[0], 1))
    # the outer cell centres sit on the lattice's edge (±2), so no member is clipped when the conditional mean
    # is interpolated back to the members
    grid = fpkit.Grid.uniform((-2.2, -2.25), (2.2, 2.25), (11, 9))
    est = E.kramers_moyal_2d(w0, w1, dt, grid, bandwidth=(0.5, 0.5))
    assert est.supported.all()
    X, Y = grid.meshgrid()
    for i in range(2):
        np.testing.assert_allclose(est.drift[i], -(Th[i, 0] * X + Th[i, 1] * Y), rtol=0, atol=1e-10)
    for i, j in ((0, 0), (1, 1), (0, 1), (1, 0)):
        np.testing.assert_allclose(est.diffusion[i, j], D[i, j], rtol=1e-10, err_msg=f"D[{i},{j}]")


def test_mechanistic_2d_returns_every_tensor_component_exactly_and_its_smoothing_bias_is_second_order():
    """Mechanistic D_ij = (η/2) E[C_ij | w]. (i) Constant C on an exact design: every component to round-off.
    (ii) C_xy(w) = c + q·w_x² (curved): the local-linear bias at the origin is q·h² (Gaussian kernel:
    ½ m'' μ₂ h², μ₂ = 1; on this lattice of spacing h/2 or finer the discrete kernel moments are exact to
    measured 2e-13 relative), so the fitted order in h is 2 and the bias q·h² to 1e-6 relative, while D_xx and
    D_yy stay exact. A 3 % error in D_xy (0.145 vs 0.15) is 4.5e-3, ≥ 200× the bias tolerance."""
    eta = 0.1
    w = _lattice(81, -4.0, 4.0)
    M = w.shape[0]
    rng = np.random.default_rng(3)
    g = rng.normal(size=(M, 2))  # the drift is not looked at here
    C = np.array([2 * S_TRUE[0, 0], 2 * S_TRUE[0, 1], 2 * S_TRUE[1, 1]]) / eta  # (η/2) C = S_TRUE
    grid = fpkit.Grid.uniform((-0.5, -0.5), (0.5, 0.5), (11, 11))  # cell centres include the origin
    est = E.mechanistic_2d(w, g, np.tile(C, (M, 1)), eta, grid, bandwidth=(0.4, 0.4))
    for i, j in ((0, 0), (1, 1), (0, 1), (1, 0)):
        np.testing.assert_allclose(est.diffusion[i, j], S_TRUE[i, j], rtol=1e-10, err_msg=f"D[{i},{j}]")
    np.testing.assert_allclose(est.drift, -E.local_linear_2d(w, g, grid, (0.4, 0.4)).value.transpose(2, 0, 1),
                               rtol=1e-12, atol=1e-14)  # fmt: skip
    q = 0.5
    cov = np.tile(C, (M, 1))
    cov[:, 1] += q * w[:, 0] ** 2 * 2 / eta  # (η/2)·C_xy = 0.15 + q w_x²
    bias = []
    hs = (0.2, 0.4)
    for h in hs:
        est = E.mechanistic_2d(w, g, cov, eta, grid, bandwidth=(h, h))
        o = (5, 5)
        bias.append(est.diffusion[0, 1][o] - S_TRUE[0, 1])
        assert est.diffusion[0, 0][o] == pytest.approx(S_TRUE[0, 0], rel=1e-10)
        assert est.diffusion[1, 1][o] == pytest.approx(S_TRUE[1, 1], rel=1e-10)
        assert bias[-1] == pytest.approx(q * h**2, rel=1e-6)
    assert np.log2(bias[1] / bias[0]) == pytest.approx(2.0, abs=1e-6)


def test_fp_stationary_covariance_with_full_tensor_converges_at_second_order_in_every_component():
    """dX = −X dt + √(2D) dW, D = [[0.4, 0.15], [0.15, 0.3]]: stationary covariance Σ = D (Σ + Σᵀ = 2D).
    Sheppard-corrected moments of the finite-volume stationary density on 24², 48², 96² cells: the errors of
    Σ_xx, Σ_yy and Σ_xy each fall at second order (measured 3.96 and 3.83–4.07× per halving), and Richardson's
    extrapolation of the last two is within 5e-5 of D (achieved 2.0e-5, 2e-6, 7e-6; domain truncation at ±3 is
    < 1e-5). D_xy = 0.145 in the operator would move Σ_xy by 5e-3, 100× this tolerance (the older 3 % check
    in test_fokker_planck.py passes that mutation)."""
    D = S_TRUE
    errs = []
    for n in (24, 48, 96):
        g = fpkit.Grid.uniform((-3, -3), (3, 3), n)
        p = fpkit.FokkerPlanck(g, drift=lambda x, y, t: (-x, -y), diffusion=D.tolist()).stationary()
        X, Y = g.meshgrid()
        h2 = g.dx[0] ** 2 / 12
        assert g.integrate(p) == pytest.approx(1.0, abs=1e-12)
        errs.append([g.integrate(p * X * X) - h2 - D[0, 0], g.integrate(p * Y * Y) - h2 - D[1, 1],
                     g.integrate(p * X * Y) - D[0, 1]])  # fmt: skip
    errs = np.array(errs)
    orders = np.log2(errs[:-1] / errs[1:])
    assert np.all(np.abs(orders - 2.0) < 0.15), orders
    richardson = (4 * errs[2] - errs[1]) / 3
    assert np.all(np.abs(richardson) < 5e-5), richardson
    assert np.all(np.abs(errs[2]) < 1.5 * np.array([3.5e-4, 3.3e-4, 2.8e-4])), errs[2]  # measured at 96²


def test_mixed_derivative_operator_with_variable_coefficient_is_second_order():
    """2∂x∂y(D_xy p) with a variable D_xy = 0.15(1 + 0.3 cos x sin y) on a periodic grid, against the exact
    derivative of D_xy·sin x sin y (by hand): second order (error ratio 4 ± 0.4 per halving; measured 3.91, 3.98),
    and the max error at 128² (measured 4.7e-4 of a maximum 0.39) below 7e-4. A coefficient 0.145 for 0.15
    is ≈ 1.3e-2 off, 20× that."""
    from fpkit.solvers.finite_volume import mixed_derivative_matrix

    def u(X, Y):
        return 0.15 * (1 + 0.3 * np.cos(X) * np.sin(Y)) * np.sin(X) * np.sin(Y)

    def exact(X, Y):  # 2 ∂x∂y u, u = 0.15 (s_x s_y + 0.3 c_x s_x s_y²)
        return 0.3 * (np.cos(X) * np.cos(Y) + 0.3 * np.cos(2 * X) * np.sin(2 * Y))

    errs = []
    for n in (32, 64, 128):
        g = fpkit.Grid.uniform((0, 0), (2 * np.pi, 2 * np.pi), n)
        X, Y = g.meshgrid()
        dxy = 0.15 * (1 + 0.3 * np.cos(X) * np.sin(Y))
        Mx = mixed_derivative_matrix(g.shape, dxy, [1 / h for h in g.dx], (True, True))
        got = (Mx @ (np.sin(X) * np.sin(Y)).ravel()).reshape(g.shape)
        errs.append(np.max(np.abs(got - exact(X, Y))))
    assert errs[-1] < 7e-4, errs
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all(np.abs(ratios - 4) < 0.4), ratios
