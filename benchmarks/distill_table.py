"""The few-step table of docs/distillation.md: FID of the teacher and of its students.

Rows (issue "Few-step generation"): the shipped teacher at 50, 20 and 8 steps with DDIM and
DPM-Solver++; the progressive-distillation students of 8, 4, 2 and 1 steps; consistency
distillation (CD) and consistency training (CT) at 1 and 2 steps. Every row is one
``python -m jaxdiff.evaluate`` call with the same ``--num_samples`` and ``--seed`` (so the
same labels, classes cycling 0..9, and the same keys per shard), the standard FID Inception
against the MNIST test images. A finished row is written to ``--out`` at once and a rerun
skips it (resumable; evaluate itself resumes inside a row from its sample shards).

Usage::

  python -m benchmarks.distill_table --data_dir=/path/to/tfds --pd_dir=runs/distill_mnist \\
      --cd_dir=runs/cd_mnist --ct_dir=runs/ct_mnist --num_samples=5000 \\
      --out=benchmarks/results/distill_table_cpu.json --picture=docs/distillation_rows.png
  python -m benchmarks.distill_table --out=benchmarks/results/distill_table_cpu.json --report

Rows whose model is missing (e.g. CT not trained yet) are skipped with a message.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

from benchmarks import measure

TEACHER = [(m, n) for m in ("ddim", "dpm_solver++") for n in (50, 20, 8)]
STUDENT_STEPS = (8, 4, 2, 1)
CONSISTENCY_STEPS = (1, 2)
# the second consistency step's noise level sigma~ (the default edm grid would visit
# sigma_min itself); Song et al. 2023 use 0.821 for two-step CIFAR-10 CD
TWO_STEP_SIGMA = 0.8


def row_keys() -> list[tuple[str, str, int]]:
    """(name, family, steps) of every row in the table's order; family is the teacher's
    sampler method, "PD", "CD" or "CT"."""
    keys = [(f"teacher {method} {n}", method, n) for method, n in TEACHER]
    keys += [(f"PD {k}", "PD", k) for k in STUDENT_STEPS]
    keys += [(f"{kind} {k}", kind, k) for kind in ("CD", "CT") for k in CONSISTENCY_STEPS]
    return keys


def row_spec(args, family: str, k: int) -> dict:
    """{"source" (evaluate's model flags), "flags", "root"[, "done"]} of one row."""
    if family == "PD":
        workdir = os.path.join(args.pd_dir, f"student_{k:04d}")
        done = os.path.join(args.pd_dir, "students.json")  # lists finished rounds only
        return dict(source=[f"--workdir={workdir}"], flags=[], done=done)
    if family in ("CD", "CT"):
        workdir = args.cd_dir if family == "CD" else args.ct_dir
        flags = [f"--num_steps={k}"]
        flags += [f"--option=sigma_min={TWO_STEP_SIGMA}"] if k == 2 else []
        return dict(source=[f"--workdir={workdir}"], flags=flags)
    source = [f"--pretrained={args.teacher}", f"--out_dir={args.eval_dir}"]
    flags = [f"--method={family}", f"--num_steps={k}"]
    return dict(source=source, flags=flags, root=os.path.join(args.eval_dir, args.teacher))


def rows(args) -> list[dict]:
    """Every row: {"name", "source" (evaluate's model flags), "flags", "root", "nfe"}."""
    out = [dict(name=name, nfe=k, **row_spec(args, family, k)) for name, family, k in row_keys()]
    for r in out:
        r.setdefault("root", os.path.join(r["source"][0].split("=", 1)[1], "eval"))
    return out


def available(row) -> bool:
    """True if the row's model exists: a shipped name, a finished round, a trained workdir."""
    flag, value = row["source"][0].split("=", 1)
    if "done" in row:  # a distillation round: finished once students.json lists it
        if not os.path.exists(row["done"]):
            return False
        with open(row["done"]) as f:
            return row["nfe"] in [s["steps"] for s in json.load(f)["students"]]
    return flag == "--pretrained" or os.path.isdir(os.path.join(value, "checkpoints"))


def evaluate_row(row, args) -> dict:
    """Runs evaluate for ``row``; its metrics JSON plus the wall time and the shard folder."""
    cmd = [sys.executable, "-m", "jaxdiff.evaluate", *row["source"], *row["flags"]]
    cmd += [f"--data_dir={args.data_dir}", "--metrics=fid", f"--num_samples={args.num_samples}"]
    cmd += [f"--seed={args.seed}"]
    start = time.time()
    subprocess.run(cmd, check=True)
    pattern = os.path.join(row["root"], "*", f"metrics_step*_n{args.num_samples}.json")
    newest = max(glob.glob(pattern), key=os.path.getmtime)
    with open(newest) as f:
        result = json.load(f)
    result.update(wall_s=round(time.time() - start, 1), shards=os.path.dirname(newest))
    return result


def load(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"rows": {}}


def save(results: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)


ROW_ORDER = [name for name, _, _ in row_keys()]


def ordered(results: dict) -> list[tuple[str, dict]]:
    """The finished rows in the table's order (teacher, PD, CD, CT), not the order run."""
    rank = {name: i for i, name in enumerate(ROW_ORDER)}
    return sorted(results["rows"].items(), key=lambda item: rank.get(item[0], len(rank)))


def report(results: dict) -> str:
    """The markdown table of the finished rows."""
    lines = ["| row | NFE | FID | wall time (min) |", "| --- | --- | --- | --- |"]
    for name, r in ordered(results):
        lines.append(f"| {name} | {r['nfe']} | {r['fid']:.2f} | {r['wall_s'] / 60:.1f} |")
    return "\n".join(lines)


def picture(results: dict, path: str, per_class: int = 2) -> None:
    """One PNG: a labelled strip per row, the first ``per_class`` samples of each class."""
    from PIL import Image, ImageDraw

    from jaxdiff.evaluation import run as run_lib

    strips = []
    for name, r in ordered(results):
        images = run_lib.load_shards(r["shards"], 10 * per_class, 10 * per_class)[..., 0]
        grid = images.reshape(per_class, 10, 28, 28).transpose(0, 2, 1, 3)
        strips.append((name, grid.reshape(per_class * 28, 10 * 28)))
    label_w, height = 150, sum(s.shape[0] + 4 for _, s in strips)
    canvas = Image.new("L", (label_w + 280, height), 255)
    draw, y = ImageDraw.Draw(canvas), 0
    for name, strip in strips:
        canvas.paste(Image.fromarray(strip), (label_w, y))
        draw.text((4, y + strip.shape[0] // 2 - 6), name, fill=0)
        y += strip.shape[0] + 4
    canvas.save(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="mnist")
    p.add_argument("--pd_dir", default="runs/distill_mnist")
    p.add_argument("--cd_dir", default="runs/cd_mnist")
    p.add_argument("--ct_dir", default="runs/ct_mnist")
    p.add_argument("--eval_dir", default="runs/eval_distill", help="The teacher's shards.")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--num_samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="Comma-separated row names (default: all).")
    p.add_argument("--out", required=True)
    p.add_argument("--picture", default=None)
    p.add_argument("--report", action="store_true", help="Print the table and stop.")
    args = p.parse_args(argv)
    results = load(args.out)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    for row in [] if args.report else rows(args):
        if row["name"] in results["rows"] or (wanted and row["name"] not in wanted):
            continue
        if not available(row):
            print(f"skipping {row['name']}: no model at {row['source'][0]}")
            continue
        result = evaluate_row(row, args)
        results["rows"][row["name"]] = {**result, "nfe": row["nfe"]}
        results.update(num_samples=args.num_samples, seed=args.seed, cpu=measure.cpu_model())
        save(results, args.out)
    if args.picture and results["rows"]:
        picture(results, args.picture)
    print(report(results))


if __name__ == "__main__":
    main()
