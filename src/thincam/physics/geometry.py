"""The one centring convention for sensor crops and placements.

A window of n pixels inside (or around) a grid of N pixels is centred when its centre pixel
n // 2 sits on the grid's centre pixel N // 2: it starts at N // 2 - n // 2 (negative: the
window is larger, and the grid is padded). The operator's sensor crop, the student's placement
of y on the scene grid and the PSF crop of a captured frame all use it.
"""

from __future__ import annotations


def centred_start(n_grid: int, n_window: int, centre: int | None = None) -> int:
    """First index of an ``n_window`` window whose centre pixel is ``centre`` (default: the grid's)."""
    return (n_grid // 2 if centre is None else centre) - n_window // 2
