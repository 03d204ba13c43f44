"""Spatial cross-fitting folds (pure numpy).

The map is cut into square blocks, coloured like a checkerboard: the two
colours are the two *folds*. A model trained on one fold scores the pixels
of the other, so no pixel is scored by a model that learned from it. Within
a fold, alternate block rows form two *halves*: the residual statistics
(and, on large maps, the null distribution) used for one half's p-values
are fitted on the other half, so no pixel is scored against a null it
helped to fit (on small maps, each pixel's null is fitted on both halves
without it; see :mod:`hyperspy_vae.detector`).

There are eight blocks along each side (sixteen along a line scan), so each
fold sees every region of the map; on a map of 64 pixels or more a side,
blocks are wider than an anomalous cluster, so a cluster's pixels mostly
fall in one fold (a model does not learn half of a cluster and then find its
other half normal). On smaller maps blocks shrink to single pixels.
"""

import numpy as np

__all__ = ["block_folds"]

#: Blocks per side of the map (per line scan: blocks along it, twice this).
BLOCKS_PER_SIDE = 8


def block_folds(map_shape):
    """Fold (0 or 1) and half (0 or 1) of every pixel.

    Parameters
    ----------
    map_shape : tuple of int
        ``(n_maps, rows, columns)``; a line scan has one row.

    Returns
    -------
    folds, halves : numpy.ndarray of int
        ``(n_maps * rows * columns,)`` each, in flat order.
    """
    n_maps, rows, cols = map_shape
    if rows == 1:
        side = max(1, cols // (2 * BLOCKS_PER_SIDE))
        bx = np.arange(cols) // side
        by = np.zeros(1, dtype=np.int64)
        fold_2d = (bx % 2)[None, :]
        half_2d = ((bx // 2) % 2)[None, :]
    else:
        by = np.arange(rows)[:, None] // max(1, rows // BLOCKS_PER_SIDE)
        bx = np.arange(cols)[None, :] // max(1, cols // BLOCKS_PER_SIDE)
        fold_2d = (by + bx) % 2
        half_2d = np.broadcast_to(by % 2, (rows, cols))
    folds = np.broadcast_to(fold_2d, (n_maps, rows, cols)).ravel()
    halves = np.broadcast_to(half_2d, (n_maps, rows, cols)).ravel()
    return folds.astype(np.int64), halves.astype(np.int64)
