"""Files of a distilled object: a turntable GIF, the field's weights and a JSON record.

``DIR/field.safetensors`` holds the raw parameters (density (R, R, R), albedo (R, R, R, 3),
background (4, 3)); ``DIR/field.json`` the settings (which fix the density blob), prompt,
model and metrics. Loading never unpickles anything.

Example::

  io.save_field("out/torus", params, {"prompt": "torus", "settings": {...}})
  params, meta = io.load_field("out/torus")
"""

import json
import os

import numpy as np
from PIL import Image

WEIGHTS, RECORD = "field.safetensors", "field.json"


def save_gif(frames: np.ndarray, path: str, upscale: int = 4, duration_ms: int = 120) -> None:
    """Writes frames (V, H, W, 3) in [0, 1] as a looping GIF, nearest-neighbour upscaled.

    Raises:
      ValueError: frames that are not (V, H, W, 3) or an upscale < 1.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (V, H, W, 3), V >= 1; got {frames.shape}.")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1; got {upscale}.")
    pixels = np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
    pixels = pixels.repeat(upscale, axis=1).repeat(upscale, axis=2)
    images = [Image.fromarray(p) for p in pixels]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)


def save_field(directory: str, params: dict, meta: dict) -> None:
    """Writes ``params`` (safetensors) and ``meta`` (JSON) into ``directory`` (created)."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    arrays = {name: np.ascontiguousarray(np.asarray(v, np.float32)) for name, v in params.items()}
    save_file(arrays, os.path.join(directory, WEIGHTS))
    with open(os.path.join(directory, RECORD), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def load_field(directory: str) -> tuple[dict, dict]:
    """(params as NumPy arrays, meta) written by :func:`save_field`.

    Raises:
      ValueError: the directory lacks the weights or the record.
    """
    from safetensors.numpy import load_file

    paths = [os.path.join(directory, name) for name in (WEIGHTS, RECORD)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"{directory}: missing {', '.join(missing)}; run jaxdiff.sds first.")
    with open(paths[1]) as f:
        meta = json.load(f)
    return dict(load_file(paths[0])), meta


def load_gif(path: str, upscale: int = 4) -> np.ndarray:
    """The frames (V, H, W, 3) in [0, 1] of a GIF written by :func:`save_gif`, its
    nearest-neighbour ``upscale`` undone.

    Raises:
      ValueError: frames whose sides are not multiples of ``upscale``.
    """
    frames = []
    with Image.open(path) as gif:
        for index in range(getattr(gif, "n_frames", 1)):  # a one-frame image has none
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    pixels = np.stack(frames)
    if pixels.shape[1] % upscale or pixels.shape[2] % upscale:
        raise ValueError(f"{path}: frames {pixels.shape[1:3]} are not multiples of {upscale}.")
    return pixels[:, ::upscale, ::upscale].astype(np.float32) / 255.0
