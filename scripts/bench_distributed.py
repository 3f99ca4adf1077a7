"""Sharded training on Dask (fpkit.distributed) against one process, its overheads, and the merge.

One JSON line per case:

* ``one-process``: ``Ensemble.train(path)`` in this process with 2 numba threads (member-steps/s);
* ``cluster-start``: a LocalCluster of 2 worker processes × 1 thread (numba 1 thread each), warmed up;
* ``dask``: the same ensemble with ``train(path, client=client, shards=S)`` on that cluster: member-steps/s,
  speed-up, whether the merged file is bit-identical to the one-process file, and the per-shard overhead
  ``(task phase × workers − Σ task seconds) / shards`` (the worker-seconds not spent inside a shard's
  training: scheduling, transfer, task start, imbalance) in seconds and as a fraction of the run, and the
  merge time;
* ``scheduling``: seconds per no-op task round trip; ``transfer``: seconds and bytes to ship one shard's
  ensemble to a worker (over a no-op);
* ``merge``: merging pieces of ``--merge-mb`` MB of snapshots (weights only, written just before: page
  cache warm) into one file: seconds per GB;
* ``projection``: the efficiency of 10⁶ members on 64 workers (2 shards each) from these numbers, for a run
  of ``--project-steps`` steps and ``--project-snapshots`` snapshots with statistics (4 fields).

Run: ``python scripts/bench_distributed.py`` (needs ``pip install "fpkit[distributed]"``); ``--smoke`` takes
seconds and prints one ``skipped`` line when Dask is missing. The machine is a shared VM: compare numbers
from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def ensemble(args, **over):
    import fpkit

    kw = dict(d=args.d, k=args.k, activation="tanh", lr=0.02, batch_size=8, members=args.members, steps=args.steps,
              snapshots=args.snapshots, seed=1, kernels=args.kernels)  # fmt: skip
    kw.update(over)
    return fpkit.Ensemble(**kw)


def same_file(a, b) -> bool:
    import h5py
    import numpy as np

    def items(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
            out["meta"] = f.attrs["meta"]
        return out

    A, B = items(a), items(b)
    return sorted(A) == sorted(B) and all(
        np.array_equal(A[k], B[k], equal_nan=getattr(A[k], "dtype", None) is not None and A[k].dtype.kind == "f")
        for k in A
    )  # fmt: skip


def noop(*_):
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--snapshots", type=int, default=20)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--shards", type=int, default=4, help="shards of the dask case (default: 2 per worker)")
    p.add_argument("--kernels", default="specialised", choices=("specialised", "generic"))
    p.add_argument("--merge-mb", type=float, default=256.0, help="size of the pieces merged in the merge case")
    p.add_argument("--project-steps", type=int, default=10000)
    p.add_argument("--project-snapshots", type=int, default=60)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    args = p.parse_args()
    if args.smoke:
        args.members, args.steps, args.snapshots, args.merge_mb, args.kernels = 64, 200, 5, 4.0, "generic"
    from fpkit import distributed as dist

    if not dist.have_dask():
        print(json.dumps({"case": "all", "skipped": f"Dask is not installed ({dist.INSTALL_HINT})"}), flush=True)
        return
    import numba

    common = {"machine": f"{platform.machine()} {os.cpu_count()} cpus (shared VM)", "members": args.members,
              "steps": args.steps, "snapshots": args.snapshots, "kernels": args.kernels}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="fpkit-bench-distributed-"))
    try:
        # ---- one process, 2 threads
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        ensemble(args, members=16, steps=10, snapshots=3).train(show_progress=False)  # compile / load the cache
        ens = ensemble(args)
        t0, c0 = time.perf_counter(), time.process_time()
        ens.train(work / "one.h5", show_progress=False)
        t1, c1 = time.perf_counter() - t0, time.process_time() - c0
        ms = args.members * args.steps
        print(json.dumps({"case": "one-process", "processes": 1, "threads": numba.get_num_threads(), "seconds": t1,
                          "cpu_seconds": c1, "member_steps_per_s": ms / t1, **common}),
              flush=True)  # fmt: skip

        # ---- a local cluster of 2 workers x 1 thread
        t0 = time.perf_counter()
        with dist.local_client(2, numba_threads=1) as client:
            ensemble(args, members=32, steps=10, snapshots=3).train(work / "warm.h5", client=client, shards=2,
                                                                    show_progress=False)  # fmt: skip
            print(json.dumps({"case": "cluster-start", "workers": 2, "threads_per_worker": 1,
                              "seconds": time.perf_counter() - t0}), flush=True)  # fmt: skip

            t0 = time.perf_counter()
            run = ens.train(work / "dask.h5", client=client, shards=args.shards, show_progress=False)
            t2 = time.perf_counter() - t0
            rep = run.shard_report
            task_s = sum(s["seconds"] for s in rep["tasks"].values())
            task_cpu = sum(s["cpu_seconds"] for s in rep["tasks"].values())
            n_sh, workers = len(rep["shards"]), 2
            per_shard = max(0.0, rep["tasks_s"] * workers - task_s) / n_sh
            print(json.dumps({
                "case": "dask", "workers": workers, "threads_per_worker": 1, "shards": n_sh, "seconds": t2,
                "member_steps_per_s": ms / t2, "speedup_vs_one_process": t1 / t2,
                "identical_to_one_process": same_file(work / "one.h5", work / "dask.h5"),
                "task_seconds_sum": task_s, "task_member_steps_per_s_per_worker": ms / task_s,
                "task_cpu_seconds_sum": task_cpu, "one_process_cpu_seconds": c1,
                "tasks_phase_s": rep["tasks_s"], "overhead_s_per_shard": per_shard,
                "overhead_fraction_per_shard": per_shard * n_sh / workers / t2,
                "merge_s": rep["merge_s"], "merge_fraction": rep["merge_s"] / t2,
                "overhead_fraction": (t2 - task_s / workers) / t2, **common}), flush=True)  # fmt: skip

            n = 20 if args.smoke else 200
            t0 = time.perf_counter()
            dist.map_tasks(client, noop, [(i,) for i in range(n)])
            sched = (time.perf_counter() - t0) / n
            print(json.dumps({"case": "scheduling", "tasks": n, "seconds_per_task": sched}), flush=True)

            shard = ens.shard(0, min(args.members, 8 * max(1, args.members // 8 // args.shards)))
            size = len(pickle.dumps(shard))
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                client.submit(noop, shard, pure=False).result()
                times.append(time.perf_counter() - t0)
            print(json.dumps({"case": "transfer", "bytes": size,
                              "seconds": max(0.0, statistics.median(times) - sched)}), flush=True)  # fmt: skip

        # ---- merge: pieces of weights only, written just before (page cache warm)
        probe = ensemble(args, members=8)
        P = probe.arch.P
        n_snap = 10
        M = max(64, int(args.merge_mb * 1e6 / (P * 8 * n_snap)) // 8 * 8)
        big = ensemble(args, members=M, statistics=False, snapshot_steps=list(range(n_snap)), steps=n_snap - 1)
        pieces = []
        for i, (a, b) in enumerate(dist.plan_shards(M, 4)):
            piece = work / f"piece{i}.h5"
            dist._run_shard(big.shard(a, b), str(piece), None, i, "", None, None)
            pieces.append(((a, b), piece))
        nbytes = M * P * 8 * n_snap
        t0, c0 = time.perf_counter(), time.process_time()
        dist.merge_pieces(big, work / "merged.h5", pieces)
        tm, cm = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"case": "merge", "pieces": 4, "members": M, "bytes": nbytes, "seconds": tm,
                          "seconds_per_gb": tm / (nbytes / 1e9), "cpu_seconds_per_gb": cm / (nbytes / 1e9),
                          "file_bytes": (work / "merged.h5").stat().st_size}), flush=True)  # fmt: skip
        # the virtual merge (train(..., virtual=True)): only the resume state and small datasets are copied
        t0, c0 = time.perf_counter(), time.process_time()
        dist.merge_pieces(big, work / "virtual.h5", pieces, virtual=True)
        tv, cv = time.perf_counter() - t0, time.process_time() - c0
        same = all(np.array_equal(a, b) for a, b in zip(*(read_weights(work / n) for n in ("merged.h5", "virtual.h5"))))
        print(json.dumps({"case": "merge-virtual", "pieces": 4, "members": M, "snapshot_bytes": nbytes,
                          "seconds": tv, "cpu_seconds": cv, "speedup_over_copy": tm / tv, "same_values": same,
                          "file_bytes": (work / "virtual.h5").stat().st_size}), flush=True)  # fmt: skip

        # ---- projection: 10^6 members on 64 workers, 2 shards each
        Mp, W = 10**6, 64
        rate = ms / task_s  # member-steps per second inside one worker's shard tasks (statistics and writes included)
        compute = Mp * args.project_steps / (W * rate)
        shards_per_worker = 2
        overhead = shards_per_worker * (per_shard + sched + 0.0)
        merge_bytes = Mp * P * 8 * (4 * args.project_snapshots) + Mp * 8 * args.project_snapshots
        merge = merge_bytes / 1e9 * tm / (nbytes / 1e9)  # at the measured wall seconds per GB
        merge_cpu = merge_bytes / 1e9 * cm / (nbytes / 1e9)  # at the measured CPU seconds per GB (uncontended)
        merge_virtual = tv * Mp / M  # copies the resume state: grows with the members, not with the snapshots
        print(json.dumps({"case": "projection", "members": Mp, "workers": W, "shards": W * shards_per_worker,
                          "steps": args.project_steps, "snapshots": args.project_snapshots, "P": P,
                          "member_steps_per_s_per_worker": rate, "compute_s_per_worker": compute,
                          "overhead_s_per_worker": overhead, "merge_bytes": merge_bytes, "merge_s": merge,
                          "merge_s_cpu_bound": merge_cpu, "efficiency": compute / (compute + overhead + merge),
                          "efficiency_cpu_bound_merge": compute / (compute + overhead + merge_cpu),
                          "merge_virtual_s": merge_virtual,
                          "efficiency_virtual_merge": compute / (compute + overhead + merge_virtual),
                          "efficiency_without_merge": compute / (compute + overhead)}), flush=True)  # fmt: skip
        # the same with workers that each have a full core (the task rate per CPU-second measured above)
        full = Mp * args.project_steps / (W * ms / task_cpu)
        print(json.dumps({"case": "projection-full-core-workers", "member_steps_per_s_per_worker": ms / task_cpu,
                          "compute_s_per_worker": full, "efficiency": full / (full + overhead + merge),
                          "efficiency_cpu_bound_merge": full / (full + overhead + merge_cpu),
                          "efficiency_virtual_merge": full / (full + overhead + merge_virtual),
                          "efficiency_without_merge": full / (full + overhead)}), flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_weights(path):
    """Every weights dataset of an ensemble file, in name order."""
    with h5py.File(path, "r") as f:
        return [f["weights"][k][()] for k in sorted(f["weights"])]


if __name__ == "__main__":
    main()
