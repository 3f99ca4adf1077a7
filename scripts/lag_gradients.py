"""Why does the mechanistic drift of a stored ensemble miss? Replay one lag between two snapshots step by step
and measure every candidate cause (issue 17, item 2).

    python scripts/lag_gradients.py RUN.h5 SNAPSHOT [--entries W2[0,0] W3[0,0] ...] [--members 1000]

The run is replayed from its stored configuration (``EnsembleRun.config``: the numba trainer is bit-identical
for a seed, checked against the stored weights at both ends of the lag), recording the full-batch gradient of
every member at every step from snapshot ``SNAPSHOT`` to the next. Per entry, over ten quantile bins of its
value at the lag's start (rms over bins relative to the snapshot estimate's rms):

* snap-KM: the snapshot estimate E[−g | w] (what the mechanistic route uses) against the Kramers-Moyal one
  E[Δw | w]/Δt (the motion over the lag);
* avg-KM: the same snapshot-type estimate at every step of the lag (each conditioned on the current w),
  averaged over the lag, against Kramers-Moyal: small when the snapshot estimator is unbiased;
* noise: the snapshot estimate's own bootstrap standard error (over members), and Kramers-Moyal's. A
  snap-KM disagreement as large as the noise is sampling noise, not bias;
* ac1: median over members of the lag-1 autocorrelation of the per-step gradient (negative: period-2
  oscillation near the edge of stability); spread: per-member spread of the snapshot gradient over that of
  its lag average.
Network-wide: η·λmax(H) on 40 members (exact H·v, Lanczos), the fraction of hidden pre-activations that
change sign per step (kink crossings) and |Δg − H Δθ| / |Δg| per step (the part of the gradient's change the
almost-everywhere Hessian does not explain: kinks and higher orders).
"""

from __future__ import annotations

import argparse

import numpy as np

import fpkit
from fpkit.network import forward
from fpkit.prediction import entry_label
from fpkit.progress import progress


def binned(x, y, edges):
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    return np.array([y[b == i].mean() for i in range(len(edges) - 1)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("snapshot", type=int)
    ap.add_argument("--entries", nargs="*", default=None)
    ap.add_argument("--bins", type=int, default=10)
    args = ap.parse_args(argv)
    run = fpkit.EnsembleRun.load(args.run)
    ens = fpkit.Ensemble(run.config)
    arch, eta, j0 = ens.arch, run.eta, args.snapshot
    s0, s1 = int(run.step[j0]), int(run.step[j0 + 1])
    K = s1 - s0
    state = ens.initial_state()
    ens.advance(state, s0)
    flat = run.flat("weights")
    th, g = np.empty((K + 1,) + flat.shape[1:]), np.empty((K + 1,) + flat.shape[1:])
    with progress(K + 1, "replaying the lag", unit="step") as bar:
        for k in range(K + 1):
            th[k] = state["theta"].T
            g[k] = ens.full_gradient(state["theta"])[0].T
            if k < K:
                ens.advance(state, 1)
            bar.update(1)
    print(f"lag: steps {s0}..{s1} (t {run.t[j0]:.3g}..{run.t[j0 + 1]:.3g}), {flat.shape[1]} members; replay "
          f"differs from the stored weights by {max(np.abs(th[0] - flat[j0]).max(), np.abs(th[-1] - flat[j0 + 1]).max()):.1e}")
    cols = {}
    for name, shape, off in zip(arch.names, arch.shapes, arch.offsets):
        for idx in np.ndindex(*shape):
            cols[entry_label(name, idx)] = off + int(np.ravel_multi_index(idx, shape))
    labels = args.entries or [lab for lab in cols if lab.startswith("W2")]
    rng = np.random.default_rng(0)
    M = th.shape[1]
    print("entry: snap-KM avg-KM | noise: snap KM | ac1 spread")
    for lab in labels:
        i = cols[lab]
        w, mg = th[:, :, i], -g[:, :, i]
        e = np.quantile(w[0], np.linspace(0, 1, args.bins + 1))
        e[0], e[-1] = -np.inf, np.inf
        A = np.array([binned(w[k], mg[k], e) for k in range(K)])
        km_y = (w[-1] - w[0]) / (eta * K)
        km = binned(w[0], km_y, e)
        n = np.sqrt(np.mean(A[0] ** 2))
        rel = lambda a, b: np.sqrt(np.mean((a - b) ** 2)) / n  # noqa: E731

        def boot(y):
            reps = [binned(w[0][ix], y[ix], e) for ix in (rng.integers(0, M, M) for _ in range(100))]
            return np.sqrt(np.mean(np.var(reps, axis=0))) / n

        ac = [np.corrcoef(mg[:-1, m], mg[1:, m])[0, 1] for m in range(M) if mg[:, m].std() > 0]
        print(f"{lab}: {rel(A[0], km):.2f} {rel(A.mean(0), km):.2f} | {boot(mg[0]):.2f} {boot(km_y):.2f} | "
              f"{np.nanmedian(ac):+.2f} {mg[0].std() / mg[:-1].mean(0).std():.1f}")
    lam = ens.lam_max(np.ascontiguousarray(th[0][:40].T))
    act = run.config["model"]["activation"]
    x = run.data["x"] if run.data and "x" in run.data else ens.dataset.x
    flips, resid = [], []
    sub = slice(0, min(M, 200))
    for k in range(min(K, 12)):
        wa, wb = arch.split(th[k][sub]), arch.split(th[k + 1][sub])
        pa, pb = forward(wa, x, act), forward(wb, x, act)
        # hidden layers' pre-activations: recompute without the activation from the previous layer's output
        names = sorted((nm for nm in wa if nm.startswith("W")), key=lambda nm: int(nm[1:]))[:-1]
        za = [np.einsum("moi,mni->mno", wa[nm], pa[ell]) + (wa[f"b{ell + 1}"][:, None, :] if f"b{ell + 1}" in wa else 0)
              for ell, nm in enumerate(names)]  # fmt: skip
        zb = [np.einsum("moi,mni->mno", wb[nm], pb[ell]) + (wb[f"b{ell + 1}"][:, None, :] if f"b{ell + 1}" in wb else 0)
              for ell, nm in enumerate(names)]  # fmt: skip
        flips.append(np.mean(np.concatenate([(np.sign(a) != np.sign(b)).ravel() for a, b in zip(za, zb)])))
        dth = th[k + 1][sub] - th[k][sub]
        hd = ens._hess_vec(np.ascontiguousarray(th[k][sub].T), np.ascontiguousarray(dth.T)).T
        dg = g[k + 1][sub] - g[k][sub]
        resid.append(np.sqrt(np.sum((dg - hd) ** 2) / np.sum(dg**2)))
    print(f"η·λmax on 40 members: median {np.median(eta * lam):.2f}, 90 % {np.quantile(eta * lam, 0.9):.2f}, "
          f"fraction above 2: {np.mean(eta * lam > 2):.2f}")
    print(f"kinks: {np.mean(flips):.4f} of the hidden pre-activations change sign per step; |Δg − H Δθ| / |Δg| "
          f"{np.median(resid):.3f} (median over steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
