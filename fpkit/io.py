"""Results files: atomic HDF5 writing and attribute (de)serialisation shared by every result type."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .errors import ConfigError

FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_h5(path, mode: str = "w"):
    """Open an HDF5 file for writing that appears at ``path`` only once complete.

    The file is written to a temporary name in the same folder and renamed over ``path`` on success;
    on any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        if mode == "a" and path.exists():
            import shutil

            shutil.copyfile(path, tmp)
            f = h5py.File(tmp, "a")
        else:
            f = h5py.File(tmp, "w")
        with f:
            f.attrs["fpkit_format"] = FORMAT_VERSION
            f.attrs["created"] = datetime.now(timezone.utc).isoformat()
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


def open_results(path, kind: str):
    """Open a results file for reading and check that it holds a result of ``kind``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"`path` {str(path)!r} does not exist")
    f = h5py.File(path, "r")
    found = f.attrs.get("kind", None)
    if found != kind:
        f.close()
        raise ConfigError(f"`path` {str(path)!r} holds {found!r}, not a {kind!r} result")
    return f
