"""Peak memory of a command's whole process tree (a run and its fork server and worker processes), which no
one process's peak RSS shows: samples the proportional set size (PSS: a page shared by k processes counts 1/k
in each) of every process of the tree from /proc every 0.25 s; prints the peak of the summed PSS, when it
happened and each process's share at that sample. Linux only.

    python scripts/psswatch.py [--timeline FILE] COMMAND ...
    python scripts/psswatch.py --show TIMELINE [MARKS] [--every N]

``--timeline`` writes every sample as a JSON line {"t": s since start, "unix": s, "procs": {pid: [role,
PSS MB, RSS MB]}} (role: main, fork-server, worker, tracker (multiprocessing's resource tracker) or other);
``--show`` prints a timeline (every N-th sample), with the stage marks of ``scripts/bench_reproduce.py
--marks`` between the samples, e.g.

    python scripts/psswatch.py --timeline tl.jsonl python scripts/bench_reproduce.py --marks marks.json
    python scripts/psswatch.py --show tl.jsonl marks.json --every 12
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


def tree(pid: int) -> list:
    """``pid`` and its descendants."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return out
    for k in kids:
        out += tree(int(k))
    return out


def memory_mb(pid: int) -> tuple:
    """(PSS, RSS) of a process in MB; zeros once it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss / 1024, rss / 1024


def role(pid: int, root: int) -> str:
    """main (the command); fork-server (the main's child running multiprocessing's fork server); worker (a
    fork server's child); tracker; other."""
    if pid == root:
        return "main"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return "gone"
    if "resource_tracker" in cmd:
        return "tracker"
    if "forkserver" in cmd:
        return "fork-server" if ppid == root else "worker"
    return "other"


def watch(command: list, timeline=None) -> int:
    p = subprocess.Popen(command)
    t0 = time.perf_counter()
    peak, at_peak, peak_t, peak_rss = 0.0, {}, 0.0, 0.0
    while p.poll() is None:
        procs = {}
        for q in tree(p.pid):
            pss, rss = memory_mb(q)
            procs[q] = [role(q, p.pid), round(pss, 1), round(rss, 1)]
        total = sum(v[1] for v in procs.values())
        t = time.perf_counter() - t0
        if timeline is not None:
            timeline.write(json.dumps({"t": round(t, 2), "unix": time.time(), "procs": procs}) + "\n")
        if total > peak:
            peak, at_peak, peak_t = total, procs, t
        peak_rss = max(peak_rss, sum(v[2] for v in procs.values()))
        time.sleep(0.25)
    print(f"PEAK tree PSS {peak:.0f} MB ({len(at_peak)} processes) at t = {peak_t:.1f} s, summed RSS "
          f"{peak_rss:.0f} MB", file=sys.stderr)  # fmt: skip
    for q, (r, pss, rss) in sorted(at_peak.items()):
        print(f"  {q} {r:<12} PSS {pss:7.1f} MB  RSS {rss:7.1f} MB", file=sys.stderr)
    return p.returncode


def show(timeline: str, marks: str | None = None, every: int = 1) -> None:
    samples = [json.loads(line) for line in open(timeline)]
    stage_marks = sorted((t, n, w) for n, w, t in json.load(open(marks))["marks"]) if marks else []
    m = 0
    for i, d in enumerate(samples):
        while m < len(stage_marks) and stage_marks[m][0] <= d["unix"]:
            print("---", stage_marks[m][1], stage_marks[m][2])
            m += 1
        if i % every:
            continue
        roles: dict = {}
        for r, pss, _ in d["procs"].values():
            roles.setdefault(r, []).append(pss)
        print(f"{d['t']:7.1f} s  tree {sum(sum(v) for v in roles.values()):6.0f} MB  "
              + "  ".join(f"{r} {'+'.join(f'{x:.0f}' for x in v)}" for r, v in roles.items()))  # fmt: skip


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    if args[:1] == ["--show"]:
        every = 1
        if "--every" in args:
            k = args.index("--every")
            every = int(args[k + 1])
            del args[k : k + 2]
        show(args[1], args[2] if len(args) > 2 else None, every)
        return 0
    if args[:1] == ["--timeline"]:
        with open(args[1], "w") as f:
            return watch(args[2:], f)
    return watch(args)


if __name__ == "__main__":
    sys.exit(main())
