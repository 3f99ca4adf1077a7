"""fpkit.processes: the local worker pool's workers end with the process that started them."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fpkit import processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purpose
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_exit_when_their_owner_is_killed():
    # a SIGKILLed owner (OOM, kill -9) cannot shut its pool down: its workers, children of the fork server,
    # used to wait for tasks forever (~180 MB each) and keep the fork server alive
    code = (
        "import os, time\n"
        "from fpkit.processes import worker_pool\n"
        "with worker_pool(2) as pool:\n"
        "    pids = sorted({pool.submit(os.getpid).result() for _ in range(8)})\n"
        "    print(' '.join(map(str, pids)), flush=True)\n"
        "    time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    workers, server = [], None
    try:
        workers = [int(p) for p in owner.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
        with open(f"/proc/{workers[0]}/stat") as f:
            server = int(f.read().rsplit(")", 1)[1].split()[1])  # the workers' parent: the fork server
        assert server != owner.pid and _alive(server)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10 * processes.OWNER_POLL_S + 5
        while any(_alive(p) for p in [*workers, server]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "workers outlived their owner"
        assert not _alive(server), "the fork server outlived its owner"
    finally:  # a failure must not leave the orphans behind
        owner.kill()
        owner.wait(10)
        for pid in [*workers, server]:
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)


_HEAP_TASKS = '''
import numpy as np

KEEP = []


def rss_mb():
    with open("/proc/self/status") as f:
        return int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1]) / 1024


def fragment(n):
    """n numpy arrays of 64 kB (below glibc's mmap threshold: heap memory), each followed by a small one that
    outlives the task, so that the big ones leave holes in the heap when freed; the RSS with them."""
    chunks = []
    for _ in range(n):
        chunks.append(np.ones(8192))
        KEEP.append(np.ones(200))
    return rss_mb()
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim; reads /proc")
def test_workers_return_a_tasks_freed_heap_memory(tmp_path):
    # a task's freed temporaries used to stay resident in the worker (~50 MB per worker after the flagship's
    # W1 predictions) while anything allocated after them lived
    (tmp_path / "heap_tasks.py").write_text(_HEAP_TASKS)
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import heap_tasks\n"
        "from fpkit.processes import worker_pool\n"
        "with worker_pool(1) as pool:\n"
        "    before = pool.submit(heap_tasks.rss_mb).result()\n"
        "    during = pool.submit(heap_tasks.fragment, 3200).result()\n"
        "    after = pool.submit(heap_tasks.rss_mb).result()\n"
        "print(before, during, after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, during, after = map(float, out.stdout.split())
    assert during - before > 150  # the task held 3200 x 64 kB = 200 MB
    assert after - before < 20, f"the worker kept {after - before:.0f} MB of the task's freed memory"


_SIGINT_TASK = '''
import os, signal, time
def interrupt_me():
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C, which reaches the whole process group
    time.sleep(5)
    return "survived"
'''


def test_a_worker_ends_silently_at_ctrl_c(tmp_path):
    # Ctrl-C is the owner's to report (one line, exit 130); each worker printed a KeyboardInterrupt traceback
    (tmp_path / "sigint_task.py").write_text(_SIGINT_TASK)
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import sigint_task\n"
        "from fpkit.processes import worker_pool\n"
        "with worker_pool(1) as pool:\n"
        "    try:\n"
        "        print(pool.submit(sigint_task.interrupt_me).result())\n"
        "    except BaseException as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["BrokenProcessPool"], out.stdout
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr, out.stderr


def test_the_fork_server_ignores_ctrl_c_while_it_imports(tmp_path):
    # Ctrl-C reaches the fork server too; while it imported fpkit for the workers (a second or more) it printed
    # a KeyboardInterrupt traceback and died. It is started with SIGINT ignored, as it ignores it once it runs
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(3)\n")
    code = (
        "import os, signal, sys, time\n"
        "from multiprocessing import forkserver\n"
        "from fpkit import processes\n"
        "processes._PRELOAD = processes._PRELOAD + ['slow_import']\n"
        "import threading\n"
        "def ctrl_c():  # while the server imports (a submit waits until the server has imported)\n"
        "    while forkserver._forkserver._forkserver_pid is None:\n"
        "        time.sleep(0.01)\n"
        "    time.sleep(1.0)\n"
        "    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGINT)\n"
        "threading.Thread(target=ctrl_c).start()\n"
        "with processes.worker_pool(1) as pool:\n"
        "    print(pool.submit(pow, 3, 4).result())\n"
    )
    # the fork server finds its preload modules on PYTHONPATH (it does not take the caller's sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split() == ["81"], (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr, out.stderr
