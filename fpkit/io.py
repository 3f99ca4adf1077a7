"""Files: the one atomic-write path of fpkit (HDF5, PNG, text: temporary file, fsync, verify, rename), output
path checks made before any work, reading with errors that name the file, and attribute (de)serialisation
shared by every result type."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .errors import FileFormatError, FpkitError, OutputError

FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------ writing
def is_no_space(exc: BaseException) -> bool:
    """True for "no space left on device" (or quota exceeded), also when HDF5 reports it only in its text."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28" in text or "Disk quota exceeded" in text


def write_error(path, exc: BaseException) -> OutputError:
    """The one error of a failed write of ``path`` (the previous file there is unchanged)."""
    path = Path(path)
    if is_no_space(exc):
        return OutputError(f"no space left on device while writing {path}; the previous {path.name} is unchanged",
                           path, errno.ENOSPC)  # fmt: skip
    why = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return OutputError(f"could not write {path} ({why}); the previous {path.name} is unchanged", path,
                       getattr(exc, "errno", None))  # fmt: skip


def check_output_file(path, inputs=(), what: str = "output") -> Path:
    """Refuse an output file path before any work: an existing folder, one of the ``inputs``, or a place that
    cannot be written (folder not writable, a file in the way of the folder)."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise OutputError(f"`{what}` {str(path)!r} is not a file name", path)
    if path.is_dir():
        raise OutputError(f"`{what}` {str(path)!r} is a folder; give a file name", path)
    for inp in inputs:
        if inp is not None and Path(inp).exists() and path.exists() and os.path.samefile(path, inp):
            raise OutputError(f"`{what}` {str(path)!r} is the input file {str(inp)!r}; give another name", path)
    _check_writable_folder(path.parent, what, path)
    if path.exists() and not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
        raise OutputError(f"`{what}` {str(path)!r} is not writable", path)
    return path


def check_output_dir(path, what: str = "out") -> Path:
    """Refuse an output folder before any work: an existing file, or a place that cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"`{what}` {str(path)!r} is an existing file, not a folder; give a folder name", path)
    _check_writable_folder(path, what, path)
    return path


def _check_writable_folder(folder: Path, what: str, path: Path) -> None:
    folder = Path(folder) if str(folder) else Path(".")
    probe = folder
    while not probe.exists():  # the nearest existing ancestor must be a writable folder
        if probe.is_symlink():  # dangling or a loop: no folder can be made through it (found only after the run)
            raise OutputError(f"`{what}` {str(path)!r}: {str(probe)!r} is a symbolic link to a missing file or "
                              f"folder ({os.readlink(probe)!r})", path)  # fmt: skip
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"`{what}` {str(path)!r}: {str(probe)!r} is a file, not a folder", path)
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"`{what}` {str(path)!r}: the folder {str(probe)!r} is not writable", path)
    if probe.is_dir():  # os.access says yes to root everywhere (/proc, a read-only mount): try it for real
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".fpkit-probe-", dir=probe))
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise OutputError(f"`{what}` {str(path)!r}: nothing can be created in {str(probe)!r} ({why})", path,
                              exc.errno) from exc  # fmt: skip


def ensure_space(path, nbytes: int) -> None:
    """Raise OSError(ENOSPC) unless the file system of ``path`` has room for ``nbytes`` (with a margin of half
    as much again and 256 KiB). For writers that let HDF5 write to disk incrementally: HDF5 meeting a full disk
    itself loses the data silently and can crash the interpreter, so it must not get there."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return
    free = st.f_bavail * st.f_frsize
    need = int(1.5 * nbytes) + 2**18
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device ({free} bytes free, {need} needed)")


def reserve_space(path, nbytes: int) -> None:
    """Reserve disk blocks for the next ``nbytes`` (with :func:`ensure_space`'s margin) that HDF5 will append
    to the open file ``path``, or raise OSError(ENOSPC). A free-space check alone leaves a race: another
    process can fill the disk between the check and HDF5's write, and HDF5 meeting a full disk loses the data
    silently and can crash the interpreter. The blocks are taken beyond the end of the file without changing
    its size (Linux ``fallocate`` with FALLOC_FL_KEEP_SIZE), so HDF5's appends land in space that is already
    ours; :func:`release_reserve` gives back what was not used. Where the file system cannot reserve space
    (not Linux, or no fallocate there), the free-space check is all there is."""
    need = int(1.5 * nbytes) + 2**18
    fallocate = _fallocate()
    if fallocate is None:
        return ensure_space(path, nbytes)
    import ctypes

    fd = os.open(path, os.O_WRONLY)
    try:
        if fallocate(fd, 1, os.fstat(fd).st_size, need) != 0:  # 1 = FALLOC_FL_KEEP_SIZE
            err = ctypes.get_errno()
            if err in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(errno.ENOSPC, f"No space left on device (could not reserve {need} bytes)")
            return ensure_space(path, nbytes)  # EOPNOTSUPP and the like: check only
    finally:
        os.close(fd)


def release_reserve(path) -> None:
    """Give back the blocks :func:`reserve_space` took beyond the end of ``path`` and HDF5 did not use."""
    with contextlib.suppress(OSError):
        os.truncate(path, os.path.getsize(path))


_FALLOCATE: list = []


def _fallocate():
    """libc's ``fallocate(fd, mode, offset, len)`` (Linux), or None."""
    if not _FALLOCATE:
        fn = None
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                fn = ctypes.CDLL(None, use_errno=True).fallocate
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
                fn.restype = ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _FALLOCATE.append(fn)
    return _FALLOCATE[0]


def _fsync(path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Who writes a temporary file, in its name: a process killed mid-write (SIGKILL, the OOM killer, power loss)
# runs no clean-up, and the next write of the same file removes what it left (``_remove_orphans``).
_HOST = "".join(c for c in socket.gethostname() if c.isalnum() or c == "-")[:32] or "host"


def _remove_orphans(folder: Path, path: Path) -> None:
    """Remove the temporary files of earlier writes of ``path`` whose writing process on this host is gone.

    Only names this module makes (``.NAME.HOST-PID.XXXXXXXX.tmp.SUFFIX``) with this host's name and a PID that
    no longer runs are touched: a live writer's file, another host's (a shared folder) and anything else stay.
    """
    if os.name != "posix":  # os.kill(pid, 0) tests for a process only on POSIX (on Windows it would end it)
        return
    head, tail = f".{path.name}.{_HOST}-", ".tmp" + path.suffix
    try:
        names = [n for n in os.listdir(folder) if n.startswith(head) and n.endswith(tail)]
    except OSError:
        return
    for name in names:
        pid = name[len(head):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or process_running(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


def process_running(pid: int) -> bool:
    """Whether a process with this PID exists (POSIX: ``os.kill(pid, 0)``; a zombie counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


@contextlib.contextmanager
def atomic_path(path, verify: Callable[[Path], None] | None = None):
    """The one atomic-write path of fpkit: yields a temporary file name in ``path``'s folder to write to.

    On success the temporary file is flushed to disk (fsync), checked by ``verify(tmp)`` (which re-opens it
    and raises if it is not what was written), and renamed over ``path``. On any error the temporary file is
    removed, ``path`` is left as it was, and an ``OSError`` (no space left, I/O error, ...) becomes one
    :class:`fpkit.errors.OutputError` ("no space left on device while writing X; the previous X is
    unchanged"); fpkit errors and interrupts pass through unchanged.
    """
    path = Path(path)
    check_output_file(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_orphans(folder, path)
        prefix = f".{path.name}.{_HOST}-{os.getpid()}."
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + path.suffix, dir=folder)
        tmp = Path(name)
        try:  # mkstemp makes the file private (0600): keep the replaced file's mode, or a new file's
            os.fchmod(fd, _mode_for(path))
        finally:
            os.close(fd)
        yield tmp
        _fsync(tmp)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
        tmp = None
        with contextlib.suppress(OSError):  # the rename itself reaches the disk (not possible everywhere)
            _fsync(folder, directory=True)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FpkitError):
            raise write_error(path, exc) from exc
        raise


def _mode_for(path: Path) -> int:
    """The permissions a file written at ``path`` gets: those of the file it replaces, or those of any new
    file (0666 less the umask, which can only be read by setting it and putting it back)."""
    with contextlib.suppress(OSError):
        return os.stat(path).st_mode & 0o7777
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _verify_h5(tmp: Path) -> None:
    try:
        with h5py.File(tmp, "r") as f:
            if "fpkit_format" not in f.attrs:
                raise OSError(errno.EIO, "the written file lacks its fpkit_format attribute")
    except OSError as exc:
        raise OSError(getattr(exc, "errno", None) or errno.EIO, f"re-reading the written file failed: {exc}") from exc


@contextlib.contextmanager
def h5_write_errors():
    """Raise the first OSError that h5py could only report as "Exception ignored": a write that fails while
    h5py releases a dataset (its chunk cache is written then) is otherwise lost silently, and the file looks
    complete with zeros where the data should be (measured on a full tmpfs). What h5py prints about it on
    stderr meanwhile is held back and shown only if no error is raised; an h5py RuntimeError about a failed
    write (e.g. "Unable to synchronously flush file ... errno = 28") becomes an OSError with that errno."""
    caught: list[BaseException] = []
    previous_hook, previous_err = sys.unraisablehook, sys.stderr
    held = io.StringIO()

    def hook(unraisable):
        if isinstance(unraisable.exc_value, OSError):
            caught.append(unraisable.exc_value)
        else:
            previous_hook(unraisable)

    sys.unraisablehook, sys.stderr = hook, held
    try:
        yield caught
    except RuntimeError as exc:
        raise as_os_error(exc) from exc
    finally:
        sys.unraisablehook, sys.stderr = previous_hook, previous_err
        if not caught and held.getvalue():
            previous_err.write(held.getvalue())
    if caught:
        raise caught[0]


def as_os_error(exc: BaseException) -> BaseException:
    """An h5py RuntimeError that reports a failed write (its text holds "errno = N") as an OSError."""
    import re

    m = re.search(r"errno = (\d+)", str(exc))
    if isinstance(exc, RuntimeError) and (m or "write failed" in str(exc)):
        return OSError(int(m.group(1)) if m else errno.EIO, str(exc).splitlines()[0])
    return exc


@contextlib.contextmanager
def atomic_h5(path, mode: str = "w"):
    """Open an HDF5 file for writing that appears at ``path`` only once complete and verified.

    The file is built in memory (HDF5's core driver) and its image written to disk through
    :func:`atomic_path`, so a full disk is an ordinary Python OSError: HDF5 itself never meets it (a write that
    failed inside HDF5 was lost silently and crashed the interpreter at exit, measured on a full tmpfs).
    ``mode = "a"`` starts from the existing file's contents.
    """
    path = Path(path)
    with atomic_path(path, verify=_verify_h5) as tmp:
        if mode == "a" and path.exists():
            f = h5py.File(path, "r+", driver="core", backing_store=False)
        else:
            f = h5py.File(str(tmp), "w", driver="core", backing_store=False)
        try:
            with h5_write_errors():
                f.attrs["fpkit_format"] = FORMAT_VERSION
                f.attrs["created"] = datetime.now(timezone.utc).isoformat()
                yield f
                f.flush()
                image = f.id.get_file_image()
        finally:
            _close_h5(f)
        with open(tmp, "wb") as fh:
            fh.write(image)
            fh.flush()


def _close_h5(f) -> None:
    """Close an h5py file, also one whose last write failed (its error has been raised already)."""
    try:
        f.close()
    except Exception:
        with contextlib.suppress(Exception):
            f.close()


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write bytes through :func:`atomic_path`, verified by reading them back."""

    def verify(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise OSError(errno.EIO, "the written file differs from what was written")

    with atomic_path(path, verify) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
    return Path(path)


def set_json_attr(obj, key: str, value) -> None:
    """Store a JSON-serialisable value (dicts, lists, numbers, strings) as a string attribute."""
    obj.attrs[key] = json.dumps(value, default=_json_default)


def get_json_attr(obj, key: str, default=None):
    if key not in obj.attrs:
        return default
    return json.loads(obj.attrs[key])


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)


@contextlib.contextmanager
def reading(path, what: str = "results file"):
    """Read a file: an error of the reader (h5py, json, a missing dataset) becomes a
    :class:`fpkit.errors.FileFormatError` naming the file; fpkit errors pass through."""
    path = Path(path)
    try:
        yield
    except FpkitError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FileFormatError(
            f"{what} {str(path)!r} cannot be read (empty, truncated, damaged or not an fpkit file): {detail}", path
        ) from exc


def open_h5(path, what: str = "results file"):
    """Open an HDF5 file for reading; a missing, empty, truncated or foreign file is a FileFormatError."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"`path` {str(path)!r} does not exist", path)
    if path.is_dir():
        raise FileFormatError(f"`path` {str(path)!r} is a folder, not a {what}", path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(
            f"{str(path)!r} is not a readable HDF5 {what} (empty, truncated or another format)", path
        ) from exc


def virtual_sources(f) -> list[str]:
    """The source files of ``f``'s virtual datasets, as stored (relative to the file's folder or absolute)."""
    found = set()

    def visit(_, obj):
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            found.update(src.file_name for src in obj.virtual_sources())

    f.visititems(visit)
    return sorted(found)


def virtual_sources_missing(f) -> list[str]:
    """The source files of ``f``'s virtual datasets that cannot be found (relative to the file's folder):
    HDF5 would read their part as the fill value (NaN) without a word."""
    folder = Path(f.filename).parent
    return [name for name in virtual_sources(f) if not (Path(name) if Path(name).is_absolute()
                                                          else folder / name).exists()]  # fmt: skip


def read_kind(path) -> str | None:
    """The ``kind`` attribute of a results file (None if it has none)."""
    with open_h5(path) as f, reading(path):
        kind = f.attrs.get("kind", None)
    return kind.decode() if isinstance(kind, bytes) else kind


def open_results(path, kind: str):
    """Open a results file for reading and check that it holds a result of ``kind``."""
    path = Path(path)
    f = open_h5(path)
    try:
        found = f.attrs.get("kind", None)
    except Exception as exc:
        _close_h5(f)
        raise FileFormatError(f"results file {str(path)!r} cannot be read: {exc}", path) from exc
    if found != kind:
        _close_h5(f)
        raise FileFormatError(f"`path` {str(path)!r} holds {found!r}, not a {kind!r} result", path)
    return f
