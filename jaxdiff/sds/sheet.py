"""One picture of several distilled objects: a row of turntable views per object.

``python -m jaxdiff.sds.sheet --out=docs/sds/turntables.png runs/sds/torus runs/sds/mug``
reads each directory's ``turntable.gif`` (written by ``python -m jaxdiff.sds``) and tiles
the views, one object per row, in the order given.
"""

import argparse
import os

import numpy as np

from jaxdiff.sds import io
from jaxdiff.training import summaries


def turntable_sheet(directories: list[str], out: str, upscale: int = 2) -> np.ndarray:
    """Writes the turntables of ``directories`` as one PNG grid; returns it (uint8).

    Raises:
      ValueError: a directory without ``turntable.gif``, or turntables of different sizes.
    """
    rows = []
    for directory in directories:
        path = os.path.join(directory, "turntable.gif")
        if not os.path.exists(path):
            raise ValueError(f"{directory}: no turntable.gif; run python -m jaxdiff.sds first.")
        rows.append(io.load_gif(path))
    shapes = {row.shape for row in rows}
    if len(shapes) != 1:
        raise ValueError(f"turntables differ in shape: {sorted(shapes)}.")
    views = np.concatenate(rows) * 2.0 - 1.0  # make_grid takes [-1, 1]
    return summaries.save_grid(views, out, ncol=rows[0].shape[0], upscale=upscale)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directories", nargs="+", help="outputs of python -m jaxdiff.sds")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--upscale", type=int, default=2, help="nearest-neighbour factor")
    args = parser.parse_args(argv)
    try:
        turntable_sheet(args.directories, args.out, args.upscale)
    except ValueError as error:
        parser.exit(1, f"error: {error}\n")
    print(args.out)


if __name__ == "__main__":
    main()
