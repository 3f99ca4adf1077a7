"""The Fokker-Planck solver's self-check: exact references solved end to end, with a table and a figure.

Each check solves a problem with a known answer and reports the error next to what it should be.
`fpkit reproduce` runs it before the experiment, so every report states how far the solver can be trusted.
"""

from __future__ import annotations

import numpy as np

import fpkit


def _l1(grid, p, q) -> float:
    return float(grid.integrate(np.abs(p - q)))


def ou_transient(n_cells=(100, 200, 400)) -> dict:
    """OU from a narrow Gaussian: L1 error against the exact Gaussian at t = 1 and the observed order."""
    errors = []
    for n in n_cells:
        g = fpkit.Grid.uniform(-6, 6, n)
        fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5)
        sol = fp.solve(fpkit.gaussian(g, 1.0, 0.3), [1.0], method="crank-nicolson", dt=2e-3)
        v = 0.09 * np.exp(-2.0) + 0.5 * (1 - np.exp(-2.0))
        errors.append(_l1(g, sol.p[-1], fpkit.gaussian(g, np.exp(-1.0), np.sqrt(v))))
    order = float(np.polyfit(np.log(n_cells), np.log(errors), 1)[0] * -1)
    return {"check": "OU transient, L1 error at t=1 (CN)", "value": errors[-1], "order": order, "expected": "order 2"}


def double_well_gibbs(n=400, D=0.1) -> dict:
    """Double well U = (x²−1)²: stationary state against e^{−U/D}, exponential fitting vs central flux."""
    g = fpkit.Grid.uniform(-2.5, 2.5, n)
    gibbs = np.exp(-((g.x**2 - 1) ** 2) / D)
    gibbs /= g.integrate(gibbs)
    drift = lambda x, t: -4 * x * (x**2 - 1)  # noqa: E731
    exp_err = _l1(g, fpkit.FokkerPlanck(g, drift=drift, diffusion=D).stationary(), gibbs)
    cen_err = _l1(g, fpkit.FokkerPlanck(g, drift=drift, diffusion=D, scheme="central").stationary(), gibbs)
    return {
        "check": "double-well stationary vs Gibbs, L1",
        "value": exp_err,
        "central_flux": cen_err,
        "expected": "round-off (exact discrete Gibbs state)",
    }


def absorbing_survival(n=400, L=2.0, D=0.4, a=0.8) -> dict:
    """Absorbing interval with drift: survival of the slowest eigenmode is exp(−(Dπ²/L² + a²/4D) t)."""
    g = fpkit.Grid.uniform(0, L, n)
    fp = fpkit.FokkerPlanck(g, drift=a, diffusion=D, bc="absorbing")
    t = np.linspace(0.1, 1.5, 8)
    sol = fp.solve(np.exp(a * g.x / (2 * D)) * np.sin(np.pi * g.x / L), t, method="crank-nicolson", dt=1e-3)
    exact = np.exp(-(D * np.pi**2 / L**2 + a**2 / (4 * D)) * t)
    return {"check": "absorbing walls, survival probability (max rel. error)",
            "value": float(np.max(np.abs(sol.mass() / exact - 1))), "expected": "O(h²) ≈ 1e-5"}


def ou_spectrum(n=800, theta=1.5, D=0.7) -> dict:
    g = fpkit.Grid.uniform(-8, 8, n)
    rates = fpkit.FokkerPlanck(g, drift=lambda x, t: -theta * x, diffusion=D).spectrum(4)
    exact = theta * np.arange(4)
    return {"check": "OU relaxation rates {nθ} (max abs. error)", "value": float(np.max(np.abs(rates - exact))),
            "expected": "O(h²)"}


def run_suite() -> list[dict]:
    """All checks, in order."""
    return [ou_transient(), double_well_gibbs(), absorbing_survival(), ou_spectrum()]


def suite_markdown(rows: list[dict]) -> str:
    lines = ["| check | result | expected |", "|---|---|---|"]
    for r in rows:
        extra = ""
        if "order" in r:
            extra = f" (observed order {r['order']:.2f})"
        if "central_flux" in r:
            extra = f" (central flux: {r['central_flux']:.2e})"
        lines.append(f"| {r['check']} | {r['value']:.2e}{extra} | {r['expected']} |")
    return "\n".join(lines)
