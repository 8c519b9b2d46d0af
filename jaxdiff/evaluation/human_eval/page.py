"""Generate a self-contained HTML page for pairwise human judgement of two image sets.

Each trial shows one image of set A and one of set B side by side; which side shows A is
drawn at random (seeded here, recorded in the results). The rater answers with the keyboard
(``F`` / left arrow: left image, ``J`` / right arrow: right image, ``U`` / Backspace: undo),
sees progress, and at the end downloads the results as JSON (button, or the ``D`` key). The
page embeds its images as PNG data URIs: one file, no server, no network.

Command line::

  python -m jaxdiff.evaluation.human_eval.page A B --out page.html \
      [--name_a model --name_b real --pairs 50 --question "Which image looks real?"]

where A and B are ``.npz`` image arrays (first array, (N, H, W, C) uint8) or
``tfds:NAME:SPLIT[:N[:DATA_DIR]]``.
"""

import argparse
import base64
import html
import io
import json

import numpy as np
from PIL import Image

RESULTS_FORMAT = "jaxdiff-human-eval/1"

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 900px; text-align: center;
        background: #fafafa; color: #222; }
 #pair { display: flex; justify-content: center; gap: 3em; margin: 1.5em 0; }
 figure { margin: 0; cursor: pointer; }
 figure img { width: __SIZE__px; height: __SIZE__px; image-rendering: pixelated;
              border: 3px solid #ccc; border-radius: 6px; background: #fff; }
 figure:hover img { border-color: #4a7; }
 figcaption { margin-top: .4em; color: #555; }
 kbd { border: 1px solid #999; border-radius: 3px; padding: 0 .3em; background: #fff; }
 progress { width: 60%; }
 #done { display: none; }
 button { font-size: 1.1em; padding: .5em 1.2em; }
</style></head>
<body>
<h2 id="question">__QUESTION__</h2>
<div id="trial">
 <div id="pair">
  <figure id="left"><img id="img-left" alt="left image"><figcaption><kbd>F</kbd> / <kbd>&larr;</kbd>
   left</figcaption></figure>
  <figure id="right"><img id="img-right" alt="right image"><figcaption><kbd>J</kbd> /
   <kbd>&rarr;</kbd> right</figcaption></figure>
 </div>
 <p><progress id="bar" max="1" value="0"></progress></p>
 <p id="progress"></p>
 <p><kbd>U</kbd> / <kbd>Backspace</kbd> undo the last answer</p>
</div>
<div id="done">
 <p id="summary"></p>
 <p><button id="download">Download results (JSON)</button> &nbsp; or press <kbd>D</kbd></p>
</div>
<script>
const DATA = __DATA__;
const trials = [];
let shownAt = performance.now();
const started = new Date().toISOString();

function show() {
  const i = trials.length, n = DATA.pairs.length;
  document.getElementById("bar").max = n;
  document.getElementById("bar").value = i;
  const text = i < n ? `Pair ${i + 1} of ${n}` : `${n} of ${n} done`;
  document.getElementById("progress").textContent = text;
  if (i >= n) {
    document.getElementById("trial").style.display = "none";
    document.getElementById("done").style.display = "block";
    document.getElementById("summary").textContent = `Thank you: ${n} pairs judged.`;
    return;
  }
  document.getElementById("trial").style.display = "block";
  document.getElementById("done").style.display = "none";
  const p = DATA.pairs[i];
  const srcA = DATA.images_a[p.index_a], srcB = DATA.images_b[p.index_b];
  document.getElementById("img-left").src = p.left === "A" ? srcA : srcB;
  document.getElementById("img-right").src = p.left === "A" ? srcB : srcA;
  shownAt = performance.now();
}

function choose(side) {
  const i = trials.length;
  if (i >= DATA.pairs.length) return;
  const p = DATA.pairs[i];
  const right = p.left === "A" ? "B" : "A";
  trials.push({pair: i, index_a: p.index_a, index_b: p.index_b, left: p.left, choice: side,
               winner: side === "left" ? p.left : right,
               ms: Math.round(performance.now() - shownAt)});
  show();
}

function results() {
  const wins_a = trials.filter(t => t.winner === "A").length;
  return {format: DATA.format, name_a: DATA.name_a, name_b: DATA.name_b, question: DATA.question,
          seed: DATA.seed, started: started, finished: new Date().toISOString(),
          num_pairs: DATA.pairs.length, wins_a: wins_a, wins_b: trials.length - wins_a,
          trials: trials};
}

function download() {
  const blob = new Blob([JSON.stringify(results(), null, 1)], {type: "application/json"});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "human_eval_results.json";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

document.addEventListener("keydown", e => {
  const k = e.key.toLowerCase();
  if (k === "arrowleft" || k === "f") choose("left");
  else if (k === "arrowright" || k === "j") choose("right");
  else if (k === "backspace" || k === "u") { trials.pop(); show(); }
  else if (k === "d" && trials.length === DATA.pairs.length) download();
  else return;
  e.preventDefault();
});
document.getElementById("left").onclick = () => choose("left");
document.getElementById("right").onclick = () => choose("right");
document.getElementById("download").onclick = download;
show();
</script>
</body></html>
"""


def _as_uint8(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C = 1 or 3, got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255], got dtype {images.dtype}")
    return images


def png_data_uri(image: np.ndarray) -> str:
    """A (H, W, C) uint8 image as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def make_pairs(num_a: int, num_b: int, num_pairs: int, seed: int = 0) -> list[dict]:
    """Random pairs: indices into A and B (without replacement while they last), random side.

    Returns:
      ``num_pairs`` dicts ``{"index_a", "index_b", "left": "A" | "B"}``.
    """
    rng = np.random.default_rng(seed)
    ia = np.concatenate([rng.permutation(num_a) for _ in range(-(-num_pairs // num_a))])
    ib = np.concatenate([rng.permutation(num_b) for _ in range(-(-num_pairs // num_b))])
    left = rng.integers(0, 2, num_pairs)
    return [
        {"index_a": int(a), "index_b": int(b), "left": "AB"[s]}
        for a, b, s in zip(ia[:num_pairs], ib[:num_pairs], left, strict=True)
    ]


def make_page(
    images_a: np.ndarray,
    images_b: np.ndarray,
    out_path: str,
    name_a: str = "A",
    name_b: str = "B",
    question: str = "Which image looks better?",
    num_pairs: int | None = None,
    seed: int = 0,
    display_size: int = 224,
) -> list[dict]:
    """Writes the self-contained judgement page.

    Args:
      images_a: (N_A, H, W, C) uint8, C in {1, 3} (e.g. model samples).
      images_b: (N_B, H', W', C') uint8 (e.g. another model, or real data).
      out_path: the ``.html`` file to write.
      name_a: label of set A stored in the results (never shown to the rater).
      name_b: label of set B.
      question: shown above the pair.
      num_pairs: trials (default min(N_A, N_B)).
      seed: seeds the pairing and the left/right draw.
      display_size: shown size in CSS pixels (pixelated upscaling).

    Returns:
      The pairs as embedded in the page (see :func:`make_pairs`).
    """
    images_a, images_b = _as_uint8(images_a), _as_uint8(images_b)
    num_pairs = num_pairs or min(len(images_a), len(images_b))
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    pairs = make_pairs(len(images_a), len(images_b), num_pairs, seed)
    used_a = sorted({p["index_a"] for p in pairs})
    used_b = sorted({p["index_b"] for p in pairs})
    data = {
        "format": RESULTS_FORMAT,
        "name_a": name_a,
        "name_b": name_b,
        "question": question,
        "seed": seed,
        "pairs": pairs,
        "images_a": {i: png_data_uri(images_a[i]) for i in used_a},
        "images_b": {i: png_data_uri(images_b[i]) for i in used_b},
    }
    page = (
        _TEMPLATE.replace("__TITLE__", html.escape(question))
        .replace("__QUESTION__", html.escape(question))
        .replace("__SIZE__", str(int(display_size)))
        .replace("__DATA__", json.dumps(data).replace("</", "<\\/"))
    )
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(page)
    return pairs


def main(argv: list[str] | None = None) -> None:
    from jaxdiff.evaluation.fid import load_images

    parser = argparse.ArgumentParser(description="Write a human-judgement page for A vs B.")
    parser.add_argument("a", help="images .npz or tfds:NAME:SPLIT[:N[:DATA_DIR]]")
    parser.add_argument("b", help="same forms as a")
    parser.add_argument("--out", required=True, help="output .html")
    parser.add_argument("--name_a", default="A")
    parser.add_argument("--name_b", default="B")
    parser.add_argument("--question", default="Which image looks better?")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pairs = make_page(
        load_images(args.a),
        load_images(args.b),
        args.out,
        args.name_a,
        args.name_b,
        args.question,
        args.pairs,
        args.seed,
    )
    print(f"wrote {args.out} with {len(pairs)} pairs")


if __name__ == "__main__":
    main()
