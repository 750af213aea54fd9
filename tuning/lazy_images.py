"""Images that stay on disk: rows of the memory-mapped image cache, read only when a batch needs them.

Folder and manifest sources decode their images once into the on-disk cache (`images`) and yield views of it.
`load_data` reads them into memory unless they would fill half of it (or `data.in_memory` is false); otherwise
splitting, class selection and batching index the views like arrays, so that data larger than memory is never
read whole. Numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LazyImages:
    """Rows of the memory-mapped image cache, read only when a batch needs them (data larger than memory).

    Indexing with a slice or an index array gives another `LazyImages`; an integer gives one image;
    `numpy.asarray` reads the rows into memory.
    """

    def __init__(self, base: np.ndarray, index: np.ndarray | None = None):
        self.base = base
        self.index = np.arange(len(base)) if index is None else np.asarray(index, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return int(len(self.index) * self.base[:1].nbytes)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return np.asarray(self.base[self.index[key]])
        return LazyImages(self.base, self.index[key])

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The images at `positions`, read in file order (fast on a memory map), returned in the order asked."""
        wanted = self.index[positions]
        order = np.argsort(wanted, kind="stable")
        out = np.empty((len(wanted), *self.base.shape[1:]), dtype=self.base.dtype)
        out[order] = self.base[wanted[order]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.rows(np.arange(len(self.index)))
        return array if dtype is None else array.astype(dtype)


def concat(a: Any, b: Any) -> Any:
    """Concatenate image sets, keeping two views of one cache lazy."""
    if isinstance(a, LazyImages) and isinstance(b, LazyImages) and a.base is b.base:
        return LazyImages(a.base, np.concatenate([a.index, b.index]))
    return np.concatenate([np.asarray(a), np.asarray(b)])
