"""The gd-vs-sgd experiment (issue 19, item 1): exact references for one-layer students, the analysis
functions on hand-made numbers, and fpkit.predict's per-layer rates under μP.

* GD (L = 1): the ensemble's mean excess test loss equals the eigen-decomposition of the empirical covariance
  (``gd_reference``) at every snapshot, within 4 standard errors.
* One-pass SGD (L = 1): the mean equals the exact second-moment recursion for Gaussian inputs
  (``sgd_reference``), within 4 standard errors.
"""

import numpy as np
import pytest

from fpkit import experiments as X
from fpkit.validation.experiments import gd_vs_sgd as g

EXP = X.load("gd-vs-sgd")


def quick_cfg(**over):
    return X.resolve_config(EXP, quick=True, overrides=over or None)


@pytest.mark.parametrize("param", ["ntk", "mup", "standard"])
@pytest.mark.parametrize("optimizer", ["gd", "sgd"])
def test_one_layer_matches_exact_reference(param, optimizer):
    cfg = quick_cfg(settings={"members": 160, "steps": 150, "snapshots": 12, "batch_size": 4})
    c = g.train_curve(cfg, param=param, depth=1, width=0, optimizer=optimizer)
    z = c.z()
    assert c.reference is not None and c.reference.shape == c.mean.shape
    assert np.all(np.abs(z) <= g.THRESHOLDS["reference_z"]), (param, optimizer, np.round(z, 2))
    assert c.mean[-1] < 0.5 * c.mean[0]  # it learned: the comparison is not between two constants


def test_references_at_step_zero_and_fixed_points():
    cfg = quick_cfg()
    lam, w = g.spectrum(cfg), g.teacher(cfg)
    assert np.isclose(np.sum(lam * w * w), 1.0)
    s0 = 0.3
    start = 0.5 * (1.0 + s0**2 * lam.sum())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, lam.size)) * np.sqrt(lam)
    y = x @ w
    assert np.isclose(g.gd_reference(x, y, w, lam, s0, 0.1, [0])[0], start)
    assert np.isclose(g.sgd_reference(lam, w, 0.0, s0, 0.1, 4, [0])[0], start)
    # noiseless targets, P > D: GD converges to w* (zero excess loss); SGD without noise too
    assert g.gd_reference(x, y, w, lam, s0, 0.5, [20000])[0] < 1e-8
    assert g.sgd_reference(lam, w, 0.0, s0, 0.2, 4, [5000])[0] < 1e-6
    # with noise, one-pass SGD at a constant rate keeps a floor that grows with the rate
    f1, f2 = (g.sgd_reference(lam, w, 0.5, s0, r, 4, [4000])[0] for r in (0.05, 0.2))
    assert 0 < f1 < f2


def test_gd_reference_equals_numpy_gd_for_one_draw():
    # the formula's mean part with s = 0: plain GD from β0 = 0, run in numpy
    rng = np.random.default_rng(1)
    lam = (np.arange(6) + 1.0) ** -1.0
    w = rng.standard_normal(6)
    x = rng.standard_normal((4, 6)) * np.sqrt(lam)  # P < D: null directions stay at 0
    y = x @ w + 0.3 * rng.standard_normal(4)
    beta = np.zeros(6)
    for _ in range(37):
        beta -= 0.2 * (x.T @ (x @ beta - y)) / 4
    e = beta - w
    assert np.isclose(g.gd_reference(x, y, w, lam, 0.0, 0.2, [37])[0], 0.5 * np.sum(lam * e * e), rtol=1e-10)


def test_best_lr_and_edges():
    lrs = 2.0 ** np.arange(-3, 4)
    true = 0.7
    loss = np.exp((np.log(lrs) - np.log(true)) ** 2)[:, None] * np.ones((1, 5))
    best, edge = g.best_lr(lrs, loss)
    assert not edge and abs(np.log(best / true)) < 0.05
    loss[-1] = np.inf  # diverged at the largest η: still decidable
    assert not g.best_lr(lrs, loss)[1]
    stable = np.exp(-np.log(lrs))[:, None] * np.ones((1, 5))
    stable[5:] = np.inf  # falls until it diverges: the best is the largest stable η
    assert g.best_lr(lrs, stable) == (lrs[4], False)
    mono = np.exp(-np.log(lrs))[:, None] * np.ones((1, 5))  # best at the largest η: the grid's edge
    assert g.best_lr(lrs, mono)[1]


def test_alpha_analysis_on_hand_made_numbers():
    rng = np.random.default_rng(0)
    al = np.array([0.5, 1.0, 2.0])
    noise = 0.01 * rng.standard_normal((3, 400))
    peaked = {"alphas": al, "gd": np.array([1.0, 2.0, 0.5])[:, None] + noise,
              "sgd": np.array([1.0, 0.8, 0.6])[:, None] + noise}  # fmt: skip
    an = g.alpha_analysis(peaked)
    assert an["gd"]["held"] and an["gd"]["peak_alpha"] == 1.0 and an["sgd"]["held"]
    flat = {"alphas": al, "gd": np.array([2.0, 1.0, 0.5])[:, None] + noise, "sgd": np.array([1.0, 1.2, 0.6])[:, None] + noise}
    an = g.alpha_analysis(flat)
    assert not an["gd"]["held"] and not an["sgd"]["held"]


def test_width_analysis_exponent():
    # loss(N) = 1 + 1/N exactly: gains shrink as 1/N, p = 1
    curves = []
    for N in (16, 32, 64):
        loss = np.full((3, 50), 1.0 + 1.0 / N) + 1e-6 * np.random.default_rng(N).standard_normal((3, 50))
        curves.append(g.Curve("mup", 2, N, "gd", np.arange(3.0), np.arange(3), loss, 0.1, 0.1, 0.1))
    w = g.width_analysis(curves, "mup", "gd")
    assert w["better"] > 0 and abs(w["p"] - 1) < 0.01
    # a deeper setting with gains ∝ 1/N²: the default analyses the deepest, ``depth`` picks one
    for N in (16, 32, 64):
        loss = np.full((3, 50), 1.0 + 4.0 / N**2) + 1e-7 * np.random.default_rng(N).standard_normal((3, 50))
        curves.append(g.Curve("mup", 3, N, "gd", np.arange(3.0), np.arange(3), loss, 0.1, 0.1, 0.1))
    assert g.width_depths(curves) == [2, 3]
    assert abs(g.width_analysis(curves, "mup", "gd")["p"] - 2) < 0.01
    assert abs(g.width_analysis(curves, "mup", "gd", depth=2)["p"] - 1) < 0.01


def test_predict_uses_layer_rates_under_mup():
    # GD (no noise): the drift-only transport of a μP output-layer entry (rate η/N) sits at the noise floor
    import fpkit
    from fpkit.prediction import layer_rates

    cfg = quick_cfg()
    ens = g.ensemble(cfg, param="mup", depth=2, width=16, optimizer="gd", lr=0.5, steps=80, members=160, P=32,
                     snapshots=8, statistics=True)  # fmt: skip
    run = ens.train(show_progress=False)
    assert layer_rates(run) == {"W1": 1.0, "W2": 1.0 / 16}
    p = fpkit.predict(run, "W2[0,0]", dt=float(run.t[-1]) / 200, cells=120, ks=False, js=False)
    assert p.distance["drift_only"][1:].max() <= g.THRESHOLDS["gd_drift_exact"]
    assert p.distance["frozen"][-1] > 2 * p.distance["drift_only"][-1]  # the entry moved


def test_diffusion_share_uses_layer_rates_of_an_ou_process():
    """An exact Ornstein-Uhlenbeck ensemble under μP (D = 8, N = 16, γ₀ = 1: W1 rate c = N/D = 2, W2 rate 1/N):
    dw = −θw dt + √(2D_c) dW from w = 0 with D_c = η c² v / 2, the diffusion the layer's stored entries feel.
    Var(T) = D_c (1 − e^{−2θT}) / θ, so the share 2 D_c T / Var(T) = 2θT / (1 − e^{−2θT}) for every layer;
    without c² it would be off by 1/c² (4× for W1, 256× for W2)."""
    from fpkit.ensemble.results import EnsembleRun
    from fpkit.prediction import diffusion_share

    rng = np.random.default_rng(7)
    D, N, M, eta, v, theta = 8, 16, 6000, 0.05, 3.0, 0.4
    t = np.linspace(0.0, 2.0, 9)
    rates = {"W1": N / D, "W2": 1.0 / N}
    shapes = {"W1": (N, D), "W2": (1, N)}
    weights, gvar = {}, {}
    for name, c in rates.items():
        Dc = eta * c * c * v / 2
        w = np.zeros((t.size, M) + shapes[name])
        for s in range(1, t.size):  # exact OU transitions between snapshots
            a = np.exp(-theta * (t[s] - t[s - 1]))
            w[s] = a * w[s - 1] + np.sqrt(Dc / theta * (1 - a * a)) * rng.standard_normal((M,) + shapes[name])
        weights[name], gvar[name] = w, np.full_like(w, v)
    cfg = {"model": {"kind": "mlp", "parameterization": "mup", "gamma0": 1.0}}
    run = EnsembleRun.from_arrays(t=t, weights=weights, eta=eta, grad_var=gvar, config=cfg)
    T = t[-1]
    exact = 2 * theta * T / (1 - np.exp(-2 * theta * T))
    tol = 5 * np.sqrt(2.0 / M) * exact  # 5 standard errors of a sample variance
    for name in rates:
        share = diffusion_share(run, name)
        assert share.shape == shapes[name]
        assert np.all(np.abs(share - exact) < tol), (name, float(share.min()), float(share.max()), exact)


def test_fp_claims_skip_the_km_lag_and_catch_silent_failures():
    """Hand-made predictions: a Kramers-Moyal one (NaN at the last snapshot) within the FP thresholds holds;
    a mechanistic one that misses by 8.5 floors is no silent failure when its diagnostics say 'fails', and is
    one when they say 'holds'."""
    from types import SimpleNamespace as NS

    def pred(fp, verdict, route):
        fp = np.asarray(fp, float)
        return NS(distance={"fp": fp, "drift_only": fp, "frozen": np.full(fp.size, 2.2)}, options={"route": route},
                  diagnostics={"verdict": verdict, "drift_disagreement": 0.9, "drift_uncertainty": 2.2})  # fmt: skip

    cfg = quick_cfg()
    res = g.Result(lam=np.ones(2), w_star=np.ones(2))
    res.fp = {"sgd": {"W1[0,0]": pred([0.0, 1.0, 1.2, np.nan], "holds", "kramers-moyal")},
              "sgd_mechanistic": {"W1[0,0]": pred([0.0, 1.0, 8.5, 8.47], "fails", "mechanistic"),
                                  "W1[1,3]": pred([0.0, 1.0, 8.5, 8.47], "holds", "mechanistic")}}  # fmt: skip
    by = {c.name: c for c in g.verdict(cfg, res).claims}
    assert by["FP W1[0,0] (SGD)"].held and by["FP W1[0,0] (SGD)"].value["max"] == 1.2
    assert by["no silent FP failure W1[0,0] (SGD, mechanistic)"].held
    assert not by["no silent FP failure W1[1,3] (SGD, mechanistic)"].held


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = X.run("gd-vs-sgd", quick=True, out=tmp_path)
    names = {c.name for c in out.verdict.claims}
    assert {"L=1 gd reference", "L=1 sgd reference", "μP η transfer"} <= names
    by = {c.name: c for c in out.verdict.claims}
    assert by["L=1 gd reference"].held and by["L=1 sgd reference"].held
    text = (tmp_path / "report.md").read_text()
    assert "## Verdict" in text and (tmp_path / "loss_curves.png").exists()
