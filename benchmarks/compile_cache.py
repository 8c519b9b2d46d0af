"""Wall time of commands without, then with a cold, then a warm persistent compilation cache.

Every ``python -m jaxdiff.X`` entry point keeps compiled programs on disk
(``jaxdiff._xla_flags.enable_compilation_cache``). This runs each command three times in
fresh processes: cache off (``JAXDIFF_COMPILATION_CACHE=0``), cache on and empty (the
first run of a new install), cache on and filled by that run (every later run), and
reports the seconds and the warm/off ratio.

Usage:
  python -m benchmarks.compile_cache --out=benchmarks/results/compile_cache_cpu.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import measure

COMMANDS = {
    "quickstart": ["-m", "jaxdiff.quickstart", "--workdir={tmp}/quickstart_{run}"],
    "sampler sweep (4 samplers, shipped mnist, 16 images)": [
        "-c",
        "from jaxdiff import pretrained\n"
        "import jax\n"
        "from jaxdiff import _xla_flags\n"
        "_xla_flags.prepare()\n"
        "m = pretrained.load('mnist')\n"
        "for method, n in [('ddim', 20), ('dpm_solver++', 20), ('ode_heun', 10), ('ddpm', 50)]:\n"
        "    jax.block_until_ready(m.sample(jax.random.key(0), 16, method=method, num_steps=n))\n",
    ],
}


def timed(args: list[str], env: dict, tmp: str, run: str) -> float:
    """Seconds of one run of ``python ARGS`` (raises if it fails); ``{tmp}`` and ``{run}``
    in ARGS name a scratch folder and the run (a fresh quickstart workdir each time)."""
    args = [a.format(tmp=tmp, run=run) for a in args]
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure_command(args: list[str]) -> dict:
    """{"off", "cold", "warm", "warm_over_off"} seconds of one command."""
    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items() if k != "JAXDIFF_COMPILATION_CACHE"}
        off = timed(args, {**base, "JAXDIFF_COMPILATION_CACHE": "0"}, tmp, "off")
        cache = {**base, "JAXDIFF_COMPILATION_CACHE": os.path.join(tmp, "xla")}
        cold, warm = timed(args, cache, tmp, "cold"), timed(args, cache, tmp, "warm")
    return dict(off=off, cold=cold, warm=warm, warm_over_off=warm / off)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="JSON results (default: print only).")
    p.add_argument("--conditions", default="", help="e.g. 'idle' or 'beside a training run'")
    args = p.parse_args(argv)
    rows = {}
    for name, command in COMMANDS.items():
        rows[name] = {k: round(v, 2) for k, v in measure_command(command).items()}
        print(name, rows[name], flush=True)
    result = dict(cpu=measure.cpu_model(), conditions=args.conditions, rows=rows)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
