"""Ensemble training speed: fpkit's lane kernels vs a batched PyTorch CPU implementation, side by side.

The same ensemble (default 1024 members, tanh autoencoder d = 16 → k = 4 → 4 → 16, B = 16 iid minibatches
from a fixed Gaussian data set of 512 samples, plain SGD, float64) is trained by

* fpkit: ``Ensemble.advance`` (numba, members in the innermost axis, blocks of 16 = two SIMD vectors of 8,
  minibatch samples in groups of 4 so that each gradient entry is read and written once per group) with the
  kernels generated for the architecture ("fpkit") and with the generic kernels ("fpkit-generic"; same
  results bit for bit),
* torch: ``torch.bmm`` over members, plainly written ("plain") and with preallocated buffers and in-place
  ops ("inplace"), with 1 and 2 threads (``torch.compile`` is tried with --compile),

and, "with statistics", each also computes the snapshot statistics every ``--stat-every`` steps (full-batch
gradient, per-sample gradient second moments, the loss, H·grad (fpkit exactly, torch by one extra gradient
pass) and λmax of 4 probe members by 30 Lanczos steps (torch: finite-difference H·v): the same outputs). One JSON line per case: member-steps per second (median of
``--repeats``; wall clock and, because the machine is shared, also per CPU-second of the process), and a
final line with the ratios fpkit / best torch. Memory per member is reported for
fpkit's state and one snapshot (4 fields × P float64) and torch's parameters plus activations.

Run: ``python scripts/bench_ensemble.py`` (needs ``pip install torch==2.13.0``, the CPU build);
``--smoke`` runs tiny sizes in a few seconds. ``--parts`` instead times the pieces of a training step in
isolation (the generated kernels on one block of 16 members, per member and sample): forward and backward
passes of a group of samples, the minibatch gather, zeroing the gradient, and ``vtanh`` alone. On a loaded machine time torch with ``--torch-threads 1``
(two torch threads wait on each other when the cores are oversubscribed) and compare per CPU-second too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

PROBES = 4  # members whose Hessian's λmax the statistics include (Lanczos, 30 steps), in fpkit and torch


def fpkit_case(args, with_stats: bool, kernels: str = "specialised"):
    from fpkit.data import arrays
    from fpkit.ensemble import Ensemble

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.d)) * np.geomspace(1.0, 0.1, args.d)
    ens = Ensemble(data=arrays(x), hidden=[args.k, args.k], activation="tanh", lr=args.lr,
                   batch_size=args.batch, members=args.members, steps=args.steps, seed=1, probes=PROBES,
                   kernels=kernels)  # fmt: skip
    state = ens.initial_state()
    ens.advance(state, 1)  # compile / load the cache
    if with_stats:
        ens.statistics(state["theta"])
    times, cpus = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < args.steps:
            chunk = min(args.stat_every, args.steps - done) if with_stats else args.steps
            ens.advance(state, chunk)
            done += chunk
            if with_stats:
                ens.statistics(state["theta"])
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    P = ens.arch.P
    mem = P * 8 * (1 + (ens.config["train"]["momentum"] > 0)) + 16  # theta (+ velocity) + rng state
    return statistics.median(times), {"cpu_seconds": statistics.median(cpus), "state_bytes_per_member": mem,
                                      "snapshot_bytes_per_member": 4 * P * 8}  # fmt: skip


def parts_case(args, repeats: int = 5, calls: int = 20000):
    """CPU time per member and sample of each piece of a training step (see the module docstring)."""
    import numba

    from fpkit.data import arrays
    from fpkit.ensemble import Ensemble
    from fpkit.solvers import autoencoder as ae

    x = np.random.default_rng(0).normal(size=(args.n, args.d)) * np.geomspace(1.0, 0.1, args.d)
    ens = Ensemble(data=arrays(x), hidden=[args.k, args.k], activation="tanh", lr=args.lr,
                   batch_size=args.batch, members=ae.BLOCK, steps=1, seed=1, kernels="specialised")  # fmt: skip
    a = ens.arch
    mod = ae.specialised(a.sizes, a.w_off, a.b_off, a.act)
    sizes, w_off, b_off, act = a.sizes, a.w_off, a.b_off, int(a.act)
    S, W, L, mw = ae.GROUP, ae.BLOCK, len(a.sizes) - 1, int(max(a.sizes))
    rng = np.random.default_rng(1)
    th, g = 0.3 * rng.normal(size=(a.P, W)), np.zeros((a.P, W))
    hs, ts, ds, es = np.zeros((S, L + 1, mw, W)), np.zeros((S, mw, W)), np.zeros((S, mw, W)), np.zeros((S, mw, W))
    hs[:, 0, : args.d] = rng.normal(size=(S, args.d, W))
    idx = rng.integers(0, args.n, size=(S, W))
    fwd, bwd, gat, vtanh = mod._forward_s, mod._backward_s, mod._gather_sample, ae.vtanh

    @numba.njit
    def r_forward(n, th, hs):
        for _ in range(n):
            fwd(th, W, sizes, w_off, b_off, act, hs)

    @numba.njit
    def r_backward(n, th, hs, ts, g, ds, es):
        for _ in range(n):
            bwd(th, W, sizes, w_off, b_off, act, hs, ts, True, 0.1, g, ds, es)

    @numba.njit
    def r_gather(n, X, idx, hs, ts):
        for _ in range(n):
            for s in range(S):
                gat(X, X, True, idx[s], X.shape[1], X.shape[1], W, hs[s, 0], ts[s])

    @numba.njit
    def r_zero(n, g):
        for _ in range(n):
            for p in range(g.shape[0]):
                for l in range(W):
                    g[p, l] = 0.0

    @numba.njit
    def r_vtanh(n, h):  # the hidden activations of one group: every unit of every hidden layer
        for _ in range(n):
            for i in range(h.size):
                h[i] = vtanh(h[i])

    hidden = rng.normal(size=S * W * int(sum(a.sizes[1:-1])))
    steps_per_group = S / args.batch  # the gradient is zeroed once per step of B samples
    cases = [("forward_s", r_forward, (th, hs), 1.0), ("backward_s", r_backward, (th, hs, ts, g, ds, es), 1.0),
             ("gather", r_gather, (x, idx, hs, ts), 1.0), ("zero_g", r_zero, (g,), steps_per_group),
             ("vtanh_of_forward", r_vtanh, (hidden,), 1.0)]  # fmt: skip
    out = {}
    for name, fn, fargs, weight in cases:
        fn(10, *fargs)
        cpus = []
        for _ in range(repeats):
            c0 = time.process_time()
            fn(calls, *fargs)
            cpus.append(time.process_time() - c0)
        out[name] = round(statistics.median(cpus) / calls / (S * W) * 1e9 * weight, 2)
    return out


def torch_case(args, threads: int, variant: str, with_stats: bool):
    import torch

    torch.set_num_threads(threads)
    dt = torch.float64
    M, d, k, B, n = args.members, args.d, args.k, args.batch, args.n
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=dt) * torch.logspace(0, -1, d, dtype=dt)
    W1 = torch.randn(M, k, d, generator=g, dtype=dt) / d**0.5
    W2 = torch.randn(M, k, k, generator=g, dtype=dt) / k**0.5
    W3 = torch.randn(M, d, k, generator=g, dtype=dt) / k**0.5
    lr = args.lr

    def grads(W1, W2, W3, x, scale):
        z1 = torch.tanh(torch.bmm(x, W1.transpose(1, 2)))
        z2 = torch.tanh(torch.bmm(z1, W2.transpose(1, 2)))
        out = torch.bmm(z2, W3.transpose(1, 2))
        e = (out - x) * scale
        d2 = torch.bmm(e, W3) * (1 - z2 * z2)
        d1 = torch.bmm(d2, W2) * (1 - z1 * z1)
        return (torch.bmm(d1.transpose(1, 2), x), torch.bmm(d2.transpose(1, 2), z1),
                torch.bmm(e.transpose(1, 2), z2), (x, z1, z2, d1, d2, e))  # fmt: skip

    if variant == "plain":

        def step():
            idx = torch.randint(0, n, (M, B), generator=g)
            g1, g2, g3, _ = grads(W1, W2, W3, X[idx], 1.0 / B)
            W1.sub_(lr * g1)
            W2.sub_(lr * g2)
            W3.sub_(lr * g3)

    else:  # preallocated buffers, in-place ops, fused baddbmm updates
        idx = torch.empty((M, B), dtype=torch.long)
        x = torch.empty((M, B, d), dtype=dt)
        z1 = torch.empty((M, B, k), dtype=dt)
        z2 = torch.empty((M, B, k), dtype=dt)
        out = torch.empty((M, B, d), dtype=dt)
        d1 = torch.empty((M, B, k), dtype=dt)
        d2 = torch.empty((M, B, k), dtype=dt)
        tmp = torch.empty((M, B, k), dtype=dt)
        Xf = X

        def step():
            torch.randint(0, n, (M, B), generator=g, out=idx)
            torch.index_select(Xf, 0, idx.view(-1), out=x.view(M * B, d))
            torch.bmm(x, W1.transpose(1, 2), out=z1).tanh_()
            torch.bmm(z1, W2.transpose(1, 2), out=z2).tanh_()
            torch.bmm(z2, W3.transpose(1, 2), out=out)
            out.sub_(x).mul_(1.0 / B)
            torch.bmm(out, W3, out=d2)
            torch.mul(z2, z2, out=tmp)
            d2.mul_(tmp.neg_().add_(1.0))
            torch.bmm(d2, W2, out=d1)
            torch.mul(z1, z1, out=tmp)
            d1.mul_(tmp.neg_().add_(1.0))
            W3.baddbmm_(out.transpose(1, 2), z2, alpha=-lr)
            W2.baddbmm_(d2.transpose(1, 2), z1, alpha=-lr)
            W1.baddbmm_(d1.transpose(1, 2), x, alpha=-lr)

    if variant == "compile":
        step = torch.compile(step)

    def stats():
        xs = X.expand(M, n, d)
        g1, g2, g3, (x, z1, z2, d1, d2, e) = grads(W1, W2, W3, xs, 1.0)
        # mean squared per-sample gradient without materialising per-sample gradients: (δ²)ᵀ (a²) / n
        sq = [torch.bmm((d1 * d1).transpose(1, 2), x * x), torch.bmm((d2 * d2).transpose(1, 2), z1 * z1),
              torch.bmm((e * e).transpose(1, 2), z2 * z2)]  # fmt: skip
        gm = [g1 / n, g2 / n, g3 / n]
        var = [s / n - q * q for s, q in zip(sq, gm)]
        h = 1e-7
        p1, p2, p3, _ = grads(W1 + h * gm[0], W2 + h * gm[1], W3 + h * gm[2], xs, 1.0 / n)
        loss = 0.5 * (e * e).sum(dim=(1, 2)) / n
        return [(a - b) / h for a, b in zip((p1, p2, p3), gm)], var, loss, lam_max(W1[:PROBES], W2[:PROBES], W3[:PROBES])

    def lam_max(W1, W2, W3, m=30):
        """λmax of the full-batch Hessian of each probe member, as fpkit computes it: m Lanczos steps with full
        reorthogonalisation (twice) from a random start, H·v by a finite difference of the gradient."""
        q = W1.shape[0]
        xs = X.expand(q, n, d)
        shapes = [W1.shape, W2.shape, W3.shape]
        sizes = [s[1] * s[2] for s in shapes]

        def hv(v):  # v (q, P) -> H v (q, P)
            parts = [a.reshape(s) for a, s in zip(torch.split(v, sizes, dim=1), shapes)]
            h = 1e-6
            a = grads(W1 + h * parts[0], W2 + h * parts[1], W3 + h * parts[2], xs, 1.0 / n)[:3]
            return torch.cat([((u - w) / h).reshape(q, -1) for u, w in zip(a, g0)], dim=1)

        g0 = grads(W1, W2, W3, xs, 1.0 / n)[:3]
        v = torch.randn(q, sum(sizes), generator=g, dtype=dt)
        v /= v.norm(dim=1, keepdim=True)
        V, alpha, beta = [], [], []
        for j in range(m):
            V.append(v)
            w = hv(v)
            alpha.append((w * v).sum(dim=1))
            B_ = torch.stack(V, dim=1)  # (q, j + 1, P)
            for _ in range(2):
                w = w - torch.einsum("qjp,qj->qp", B_, torch.einsum("qjp,qp->qj", B_, w))
            b = w.norm(dim=1)
            if j + 1 < m:
                beta.append(b)
                v = w / torch.where(b > 0, b, torch.ones_like(b))[:, None]
        T = torch.diag_embed(torch.stack(alpha, 1)) + torch.diag_embed(torch.stack(beta, 1), 1) \
            + torch.diag_embed(torch.stack(beta, 1), -1)
        return torch.linalg.eigvalsh(T)[:, -1]

    with torch.no_grad():
        step()
        times, cpus = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(args.steps):
                step()
                if with_stats and (s + 1) % args.stat_every == 0:
                    stats()
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    P = M * (2 * k * d + k * k)
    act = M * B * (3 * d + 5 * k) * 8  # x, out (+ e), z1, z2, d1, d2, tmp
    return statistics.median(times), {"cpu_seconds": statistics.median(cpus), "param_bytes_per_member": P // M * 8,
                                      "activation_bytes_per_member": act // M}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=1024)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--stat-every", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--torch-threads", default="1,2", help="torch thread counts to time (default 1,2)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    p.add_argument("--parts", action="store_true", help="only the pieces of a training step, ns per member-sample")
    args = p.parse_args()
    if args.smoke:
        args.members, args.steps, args.repeats, args.stat_every, args.n = 64, 20, 1, 10, 64
    if args.parts:
        print(json.dumps({"case": "parts", "ns_per_member_sample": parts_case(args), "d": args.d, "k": args.k,
                          "B": args.batch, "load_average": os.getloadavg()[0]}))  # fmt: skip
        return
    common = {"members": args.members, "d": args.d, "k": args.k, "B": args.batch, "steps": args.steps,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus (shared VM)"}  # fmt: skip
    best, best_cpu = {}, {}
    for with_stats in (False, True):
        t, mem = fpkit_case(args, with_stats, "generic")
        print(json.dumps({"case": "fpkit-generic", "statistics": with_stats, "seconds": t,
                          "member_steps_per_s": args.members * args.steps / t, **mem, **common}), flush=True)  # fmt: skip
        t, mem = fpkit_case(args, with_stats)
        rate = args.members * args.steps / t
        best[("fpkit", with_stats)] = rate
        best_cpu[("fpkit", with_stats)] = args.members * args.steps / mem["cpu_seconds"]
        print(json.dumps({"case": "fpkit", "statistics": with_stats, "member_steps_per_s": rate, "seconds": t,
                          **mem, **common}), flush=True)  # fmt: skip
        try:
            import torch  # noqa: F401
        except ImportError:
            print(json.dumps({"case": "torch", "skipped": "torch not installed (pip install torch==2.13.0)"}))
            continue
        variants = ["plain", "inplace"] + (["compile"] if args.compile else [])
        for variant in variants:
            for threads in [int(v) for v in args.torch_threads.split(",")]:
                try:
                    t, mem = torch_case(args, threads, variant, with_stats)
                except Exception as exc:  # noqa: BLE001  (torch.compile needs a C compiler; report, don't fail)
                    print(
                        json.dumps({"case": f"torch-{variant}", "threads": threads, "error": str(exc)[:200]})
                    )
                    continue
                rate = args.members * args.steps / t
                key = ("torch", with_stats)
                best[key] = max(best.get(key, 0.0), rate)
                best_cpu[key] = max(best_cpu.get(key, 0.0), args.members * args.steps / mem["cpu_seconds"])
                print(json.dumps({"case": f"torch-{variant}", "threads": threads, "statistics": with_stats,
                                  "member_steps_per_s": rate, "seconds": t, **mem, **common}), flush=True)  # fmt: skip
        if ("torch", with_stats) in best:
            key_f, key_t = ("fpkit", with_stats), ("torch", with_stats)
            print(json.dumps({"case": "ratio", "statistics": with_stats,
                              "fpkit_over_best_torch_wall": best[key_f] / best[key_t],
                              "fpkit_over_best_torch_cpu": best_cpu[key_f] / best_cpu[key_t]}))  # fmt: skip


if __name__ == "__main__":
    main()
