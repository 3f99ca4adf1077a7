"""Mutation testing of the experiment layer on a seeded sample of mutants (issue 23), with cosmic-ray.

Reads cosmic-ray.toml at the repository root. The files of HEAD (or, with --worktree, of the working tree)
are copied to a temporary directory where solvers/ and validation/ become the plain sub-packages
fpkit/solvers and fpkit/validation, so cosmic-ray, which mutates files in place, never touches the working
tree and the tests import the mutated copy (PYTHONPATH puts the copy ahead of the editable install). One
cosmic-ray session per module (each with its own test files, run with -x); all mutants are generated, a
sample of them is drawn with a fixed seed from the pool sorted by (module, operator, occurrence), the rest
are marked skipped, and `cosmic-ray exec` runs the sample. Prints per-module counts and kill rates and
exits 1 when the experiment layer's kill rate on the sample is below the configured threshold (2 when the
unmutated tests fail).

    python scripts/mutation_sample.py                       # CI: the configured sample
    python scripts/mutation_sample.py --sample 300 --modules fpkit/prediction.py --out mut-out
    python scripts/mutation_sample.py --all --out mut-out   # every mutant of the ci modules
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def copy_tree(dest: Path, worktree: bool = False) -> None:
    """Copy the repository into dest, with the package-dir mapping made into plain sub-packages: the files of
    HEAD (default; other people's uncommitted edits stay out), or with ``worktree`` the working tree's
    tracked and untracked-but-not-ignored files."""
    if worktree:
        listing = ["git", "ls-files", "-co", "--exclude-standard", "-z"]
    else:
        listing = ["git", "ls-tree", "-r", "--name-only", "-z", "HEAD"]
    files = subprocess.run(listing, cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in files:
        if not rel:
            continue
        parts = Path(rel).parts
        target = dest / "fpkit" / rel if parts[0] in ("solvers", "validation") else dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if worktree:
            if (ROOT / rel).is_file():
                shutil.copy2(ROOT / rel, target)
        else:
            blob = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, check=True, capture_output=True)
            target.write_bytes(blob.stdout)


def module_config(base: dict, path: str, command: str, timeout: float) -> str:
    cfg = dict(base)
    cfg["module-path"] = path
    cfg["test-command"] = command
    cfg["timeout"] = float(timeout)
    lines = ["[cosmic-ray]"]
    for key, value in cfg.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    lines += ["", "[cosmic-ray.distributor]", 'name = "local"', ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "cosmic-ray.toml"))
    ap.add_argument("--sample", type=int, help="mutants to run (default: the config's sample)")
    ap.add_argument("--all", action="store_true", help="run every mutant")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--modules", nargs="*", help="module paths (as in the config); default: those with ci = true")
    ap.add_argument("--per-module", action="store_true", help="draw --sample mutants from each module")
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the unmutated run (CI runs it just before); the timeout is then the config's")
    ap.add_argument("--worktree", action="store_true", help="mutate a copy of the working tree, not of HEAD")
    ap.add_argument("--out", help="keep the session databases, survivors' diffs and a JSON summary here")
    args = ap.parse_args(argv)

    conf = tomllib.loads(Path(args.config).read_text())
    base, mconf = conf["cosmic-ray"], conf["fpkit-mutation"]
    seed = mconf["seed"] if args.seed is None else args.seed
    threshold = mconf["threshold"] if args.threshold is None else args.threshold
    sample = mconf["sample"] if args.sample is None else args.sample
    modules = [m for m in mconf["module"] if (m["path"] in args.modules if args.modules else m["ci"])]
    if not modules:
        ap.error("no modules selected")

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fpkit-mutation-"))
    out = Path(args.out).resolve() if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(work) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("NUMBA_NUM_THREADS", "2")
    try:
        copy_tree(work, args.worktree)
        from cosmic_ray.work_db import WorkDB, use_db
        from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

        # The unmutated tests must pass; one run of all the selected modules' tests also sets the per-mutant
        # timeout (3 x that time, at least the config's timeout: an upper bound for every module's tests).
        all_tests = [t for m in modules for t in m["tests"] if (work / t).is_file()]
        command = mconf["pytest"] + " " + " ".join(dict.fromkeys(all_tests))
        t_base = 0.0
        if not args.no_baseline:
            t0 = time.monotonic()
            base_run = subprocess.run(
                command, shell=True, cwd=work, env=dict(env, PYTHONDONTWRITEBYTECODE="1"), capture_output=True,
                text=True,
            )
            t_base = time.monotonic() - t0
            if base_run.returncode != 0:
                print(f"unmutated tests fail:\n{base_run.stdout[-3000:]}", file=sys.stderr)
                return 2
        timeout = max(base["timeout"], 3.0 * t_base)
        print(f"unmutated tests {t_base:.0f} s; per-mutant timeout {timeout:.0f} s", flush=True)

        # Generate every module's mutants.
        sessions = []
        for m in modules:
            tests = [t for t in m["tests"] if (work / t).is_file()]
            command = mconf["pytest"] + " " + " ".join(tests)
            name = m["path"].replace("/", "_").removesuffix(".py")
            cfg_path, db_path = work / f"{name}.toml", work / f"{name}.sqlite"
            cfg_path.write_text(module_config(base, m["path"], command, timeout))
            subprocess.run(["cosmic-ray", "init", str(cfg_path), str(db_path)], cwd=work, env=env, check=True)
            with use_db(str(db_path), WorkDB.Mode.open) as db:
                items = sorted(
                    db.work_items,
                    key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence),
                )
            print(f"{m['path']}: {len(items)} mutants", flush=True)
            sessions.append(dict(module=m, cfg=cfg_path, db=db_path, items=items, name=name))

        # Draw the sample (deterministic: sorted pool, seeded generator) and skip the rest.
        rng = random.Random(seed)
        if args.all:
            chosen = {w.job_id for s in sessions for w in s["items"]}
        elif args.per_module:
            chosen = set()
            for s in sessions:
                ids = [w.job_id for w in s["items"]]
                chosen |= set(rng.sample(ids, min(sample, len(ids))))
        else:
            pool = [w.job_id for s in sessions for w in s["items"]]
            chosen = set(rng.sample(pool, min(sample, len(pool))))
        for s in sessions:
            skip = [w.job_id for w in s["items"] if w.job_id not in chosen]
            with use_db(str(s["db"]), WorkDB.Mode.open) as db:
                if skip:
                    db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
            s["n"] = len(s["items"]) - len(skip)
        print(f"running {len(chosen)} mutants (seed {seed})", flush=True)

        # Run and count.
        summary, survivors_text = {}, []
        for s in sessions:
            if s["n"]:
                subprocess.run(["cosmic-ray", "exec", str(s["cfg"]), str(s["db"])], cwd=work, env=env, check=True)
            counts = dict(mutants=len(s["items"]), run=0, killed=0, timeout=0, survived=0, incompetent=0)
            with use_db(str(s["db"]), WorkDB.Mode.open) as db:
                for item, result in db.completed_work_items:
                    if result.worker_outcome == WorkerOutcome.SKIPPED:
                        continue
                    counts["run"] += 1
                    if result.test_outcome == TestOutcome.KILLED:
                        counts["timeout" if result.output == "timeout" else "killed"] += 1
                    elif result.test_outcome == TestOutcome.SURVIVED:
                        counts["survived"] += 1
                        mu = item.mutations[0]
                        survivors_text.append(
                            f"## {s['module']['path']} {mu.operator_name} #{mu.occurrence} "
                            f"line {mu.start_pos[0]}\n{result.diff}\n"
                        )
                    else:
                        counts["incompetent"] += 1
            summary[s["module"]["path"]] = dict(counts, layer=s["module"]["layer"])
            if out:
                shutil.copy2(s["db"], out / s["db"].name)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def rate(c):
        decided = c["killed"] + c["timeout"] + c["survived"]
        return (c["killed"] + c["timeout"]) / decided if decided else float("nan")

    print(f"\n{'module':52s} {'mutants':>7s} {'run':>5s} {'killed':>6s} {'tmout':>5s} {'surv':>5s} {'rate':>6s}")
    layers: dict[str, dict] = {}
    for path, c in summary.items():
        print(f"{path:52s} {c['mutants']:7d} {c['run']:5d} {c['killed']:6d} {c['timeout']:5d} {c['survived']:5d} "
              f"{rate(c):6.1%}")
        agg = layers.setdefault(c["layer"], dict(killed=0, timeout=0, survived=0))
        for k in agg:
            agg[k] += c[k]
    for layer, c in layers.items():
        print(f"{'layer ' + layer:52s} {'':7s} {'':5s} {c['killed']:6d} {c['timeout']:5d} {c['survived']:5d} "
              f"{rate(c):6.1%}")
    for text in survivors_text:  # what to look at: the surviving mutants' diffs
        print(text)
    elapsed = time.monotonic() - t_start
    print(f"elapsed {elapsed / 60:.1f} min")
    if out:
        (out / "summary.json").write_text(json.dumps(dict(seed=seed, modules=summary, elapsed_s=elapsed), indent=1))
        (out / "survivors.md").write_text("\n".join(survivors_text))
    exp = layers.get("experiment")
    if exp and rate(exp) < threshold:
        print(f"FAIL: experiment layer kills {rate(exp):.1%} of sampled mutants < threshold {threshold:.0%}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
