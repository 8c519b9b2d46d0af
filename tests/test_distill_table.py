"""benchmarks/distill_table.py: which rows run, resume, the table and the picture.

evaluate itself is replaced by a stand-in that writes what evaluate writes (shards and a
metrics JSON), so these tests check the driver's bookkeeping in milliseconds.
"""

import json
import os

import numpy as np
from PIL import Image

from benchmarks import distill_table
from jaxdiff.evaluation import run as run_lib


def fake_evaluate(calls):
    """A ``subprocess.run`` stand-in: records the command and writes evaluate's outputs."""

    def run(cmd, check):
        flags = dict(a[2:].split("=", 1) for a in cmd if a.startswith("--"))
        calls.append(flags)
        root = flags.get("out_dir", "") + "/mnist" if "pretrained" in flags else None
        root = root or os.path.join(flags["workdir"], "eval")
        out = os.path.join(root, f"{flags.get('method', 'ddim')}_{flags.get('num_steps', 0)}")
        os.makedirs(out, exist_ok=True)
        n = int(flags["num_samples"])
        images = np.full((n, 28, 28, 1), len(calls), np.uint8)
        np.savez(run_lib.shard_path(out, 0), images=images)
        with open(os.path.join(out, f"metrics_step1_n{n}.json"), "w") as f:
            json.dump({"fid": 10.0 + len(calls)}, f)

    return run


def test_rows_wait_for_their_models_and_a_rerun_skips_finished_rows(tmp_path, monkeypatch):
    pd_dir = tmp_path / "pd"
    for k in (8, 4, 2):  # round 2 has checkpoints but is unfinished
        os.makedirs(pd_dir / f"student_{k:04d}" / "checkpoints")
    (pd_dir / "students.json").write_text(json.dumps({"students": [{"steps": 8}, {"steps": 4}]}))
    calls = []
    monkeypatch.setattr(distill_table.subprocess, "run", fake_evaluate(calls))
    out, pic = tmp_path / "table.json", tmp_path / "rows.png"
    argv = [
        f"--pd_dir={pd_dir}", f"--cd_dir={tmp_path / 'cd'}", f"--ct_dir={tmp_path / 'ct'}",
        f"--eval_dir={tmp_path / 'eval'}", "--num_samples=20", f"--out={out}", f"--picture={pic}",
    ]  # fmt: skip
    distill_table.main(argv)
    names = list(json.loads(out.read_text())["rows"])
    assert names == [f"teacher {m} {n}" for m in ("ddim", "dpm_solver++") for n in (50, 20, 8)] + [
        "PD 8",
        "PD 4",
    ]
    assert all(c["num_samples"] == "20" and c["seed"] == "0" for c in calls)
    assert Image.open(pic).size[1] == 8 * (2 * 28 + 4)  # a strip of 2 x 10 digits per row

    (pd_dir / "students.json").write_text(
        json.dumps({"students": [{"steps": s} for s in (8, 4, 2)]})
    )
    distill_table.main(argv)
    assert len(calls) == 9 and calls[-1]["workdir"].endswith("student_0002")  # only the new row


def test_report_lists_each_row_with_its_fid():
    results = {"rows": {"PD 4": {"nfe": 4, "fid": 7.256, "wall_s": 90.0}}}
    assert distill_table.report(results).splitlines()[-1] == "| PD 4 | 4 | 7.26 | 1.5 |"
