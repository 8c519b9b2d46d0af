"""Outputs a person looks at: PNG sample grids and TensorBoard scalars/images (tensorboardX)."""

import json
import os

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
    """[-1, 1] floats (N, H, W, C) -> uint8 [0, 255]."""
    images = np.clip((np.asarray(images, np.float32) + 1.0) * 127.5, 0.0, 255.0)
    return np.round(images).astype(np.uint8)


def make_grid(images, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles N images (N, H, W, C) in [-1, 1] into one uint8 image (rows, cols, C).

    Args:
      images: the images, C = 1 or 3.
      ncol: images per row (default ceil(sqrt(N))).
      pad: white pixels between tiles.
    """
    x = to_uint8(images)
    n, h, w, c = x.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top : top + h, left : left + w] = x[i]
    return grid


def save_grid(images, path: str, ncol: int | None = None, upscale: int = 1) -> np.ndarray:
    """Writes :func:`make_grid` of ``images`` as a PNG (nearest-neighbour upscaled).

    Clips (N, T, H, W, C) are tiled one clip per row, its frames left to right.
    """
    if np.ndim(images) == 5:
        images = np.asarray(images)
        ncol = images.shape[1]
        images = images.reshape(-1, *images.shape[2:])
    grid = make_grid(images, ncol)
    if upscale > 1:
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return grid


class Writer:
    """TensorBoard event files in ``workdir/tb`` plus ``workdir/metrics.jsonl``.

    Each ``scalars`` call appends one JSON line ``{"step": s, name: value, ...}`` (easy to
    read back in tests and notebooks). A writer with ``enabled=False`` (hosts other than 0)
    does nothing.
    """

    def __init__(self, workdir: str, enabled: bool = True):
        self._writer = None
        self._jsonl = os.path.join(workdir, "metrics.jsonl")
        if enabled:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(os.path.join(workdir, "tb"))

    def scalars(self, step: int, values: dict) -> None:
        if self._writer:
            values = {name: float(value) for name, value in values.items()}
            for name, value in values.items():
                self._writer.add_scalar(name, value, step)
            with open(self._jsonl, "a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")

    def image(self, step: int, name: str, grid: np.ndarray) -> None:
        if self._writer:
            self._writer.add_image(name, grid, step, dataformats="HWC")

    def close(self) -> None:
        if self._writer:
            self._writer.close()
