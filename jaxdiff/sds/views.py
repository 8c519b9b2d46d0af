"""Is each side of a distilled object the right side? A nearest-render check.

The shape classifier says *what* a turntable view shows, not *from where*: a mug whose
handle points the wrong way, or an untouched density blob (which it happens to call a
mug), still passes it. Here each view is matched to its nearest training render of the
prompted class (squared pixel distance), and that render's azimuth bin is compared with
the view's own: a view-consistent object agrees within one 45-degree bin; views with no
relation to azimuth agree by chance 3 times in 8.

Example::

  renders = shapes3d.generate("shapes3d", "train", cache_dir)
  fraction = views.view_agreement(frames, turntable["azimuth"], renders, class_id)
"""

import numpy as np

from jaxdiff.data import shapes3d


def nearest_view_bins(frames, renders: shapes3d.Renders, class_id: int) -> np.ndarray:
    """The azimuth bins (V,) of the nearest class-``class_id`` render to each frame.

    Args:
      frames: (V, H, W, 3) in [0, 1], the renders' size.
      renders: the training renders (uint8 images, classes, labels).
      class_id: the prompted class.

    Raises:
      ValueError: frames of another size than the renders, or a class with no renders.
    """
    frames = np.asarray(frames, np.float32)
    chosen = renders.classes == class_id
    if frames.ndim != 4 or frames.shape[1:] != renders.images.shape[1:]:
        raise ValueError(
            f"frames must have shape (V, {', '.join(map(str, renders.images.shape[1:]))}); "
            f"got {frames.shape}."
        )
    if not chosen.any():
        raise ValueError(f"no renders of class {class_id}.")
    images = renders.images[chosen].astype(np.float32) / 255.0
    flat_frames, flat_images = frames.reshape(len(frames), -1), images.reshape(len(images), -1)
    distance = (
        (flat_frames**2).sum(1, keepdims=True)
        - 2.0 * flat_frames @ flat_images.T
        + (flat_images**2).sum(1)[None]
    )
    bins = renders.labels[chosen] % shapes3d.VIEW_BINS
    return bins[distance.argmin(axis=1)]


def view_agreement(
    frames, azimuth, renders: shapes3d.Renders, class_id: int, tolerance: int = 1
) -> float:
    """The fraction of frames whose nearest render's bin is within ``tolerance`` bins
    (circularly) of the bin of the frame's own ``azimuth`` (V,) radians."""
    found = nearest_view_bins(frames, renders, class_id)
    wanted = shapes3d.view_bin(np.asarray(azimuth, np.float64))
    gap = np.abs(found - wanted) % shapes3d.VIEW_BINS
    gap = np.minimum(gap, shapes3d.VIEW_BINS - gap)
    return float(np.mean(gap <= tolerance))
