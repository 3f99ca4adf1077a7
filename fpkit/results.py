"""The base of every result type (Solution, Paths, Surfaces, ...): HDF5 save/load with the run's description.

A subclass names its ``kind``, lists the array attributes in ``_datasets`` and keeps everything else that
describes the run (the resolved problem, the method, the seed) in the JSON-serialisable dict ``meta``.
A grid, if any, is stored as the attribute ``grid``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from .grid import Grid
from .io import atomic_h5, get_json_attr, open_results, reading, set_json_attr


class Result:
    kind: ClassVar[str] = "result"
    _datasets: ClassVar[tuple[str, ...]] = ()

    meta: dict
    grid: Grid | None

    def save(self, path) -> Path:
        """Write the result to an HDF5 file atomically; returns the path."""
        path = Path(path)
        with atomic_h5(path) as f:
            f.attrs["kind"] = self.kind
            set_json_attr(f, "meta", self.meta)
            if getattr(self, "grid", None) is not None:
                set_json_attr(f, "grid", self.grid.to_dict())
            for name in self._datasets:
                arr = getattr(self, name)
                if arr is None:
                    continue
                arr = np.asarray(arr)
                big = arr.size > 4096
                f.create_dataset(
                    name, data=arr, compression="gzip" if big else None, compression_opts=4 if big else None
                )
        return path

    @classmethod
    def load(cls, path):
        """Read a result written by ``save``."""
        with open_results(path, cls.kind) as f, reading(path):
            fields = {name: f[name][()] for name in cls._datasets if name in f}
            meta = get_json_attr(f, "meta", {})
            g = get_json_attr(f, "grid")
        with reading(path):
            grid = Grid.from_dict(g) if g is not None else None
            return cls._from_stored(fields, meta, grid)

    @classmethod
    def _from_stored(cls, fields: dict, meta: dict, grid: Grid | None):
        raise NotImplementedError
