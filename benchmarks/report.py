"""Markdown tables from the results JSON files (what benchmarks/README.md quotes).

Usage:
  python -m benchmarks.report benchmarks/results/*_cpu.json
"""

import json
import sys


def _mb(n) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MB"


def train_table(r: dict) -> list[str]:
    lines = [
        f"Training, `{r['preset']}` ({r['params']['jaxdiff']:,} / {r['params']['diffusers']:,} "
        f"parameters jaxdiff / diffusers), {r['device']['device']}, jaxdiff "
        f"{r['options']['dtype']}, torch bf16={r['options']['bf16']} "
        f"compile={r['options']['compile']}, load average at start "
        f"{r['device']['load_average'][0]:.1f}:",
        "",
        "| batch | jaxdiff img/s | diffusers img/s | ratio | jaxdiff step | diffusers step "
        "| jaxdiff compile | diffusers 1st step | GFLOP/step (XLA / torch count) | MFU jaxdiff "
        "/ diffusers | XLA memory |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in r["rows"]:
        j, d = row["jaxdiff"], row["diffusers"]
        lines.append(
            f"| {row['batch']} | {j['images_per_s']:.1f} | {d['images_per_s']:.1f} "
            f"| **{row['speedup_images_per_s']:.2f}x** | {j['step_s'] * 1e3:.0f} ms "
            f"| {d['step_s'] * 1e3:.0f} ms | {j['compile_or_first_step_s']:.1f} s "
            f"| {d['compile_or_first_step_s']:.1f} s | {j['flops_per_step'] / 1e9:.1f} / "
            f"{d['flops_per_step'] / 1e9:.1f} | {j['mfu']:.1%} / {d['mfu']:.1%} "
            f"| {_mb(j['xla_memory_bytes'])} |"
        )
    top = [row["diffusers"].get("top_ops") for row in r["rows"] if row["diffusers"].get("top_ops")]
    if top:
        ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in top[-1][:6])
        lines += ["", f"diffusers' top ops (batch {r['rows'][-1]['batch']}, self time): {ops}."]
    return lines


def sampling_table(r: dict) -> list[str]:
    lines = [
        f"Sampling, `{r['preset']}`, batch {r['batch']}, {r['device']['device']}, load average "
        f"at start {r['device']['load_average'][0]:.1f}:",
        "",
        "| sampler | NFE | seconds / batch | images/s | first call (compile) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in r["rows"].items():
        lines.append(
            f"| {name} | {row['nfe']} | {row['seconds']:.2f} | {row['images_per_s']:.1f} "
            f"| {row['first_call_s']:.1f} s |"
        )
    lines += [
        "",
        f"DDIM speedup jaxdiff / diffusers: **{r['ddim_speedup']:.2f}x**; outputs agree to "
        f"{r['ddim_max_rel_diff']:.1e} (max |difference| / max |value|).",
    ]
    return lines


def practices_table(r: dict) -> list[str]:
    lines = [
        f"Practices, `{r['preset']}`, training batch {r['batch']}, sampling batch "
        f"{r['sample_batch']}, {r['device']['device']}, load average at start "
        f"{r['device']['load_average'][0]:.1f}:",
        "",
        "| A/B | variant | step / run time | compile | XLA memory |",
        "| --- | --- | --- | --- | --- |",
    ]
    for ab in ("donation", "host_sync", "bf16"):
        for name, row in r.get(ab, {}).items():
            lines.append(
                f"| {ab} | {name} | {row['step_s'] * 1e3:.0f} ms/step | {row['compile_s']:.1f} s "
                f"| {_mb(row['xla_memory_bytes'])} |"
            )
    scan = r.get("scan_sampling")
    if scan:
        for name in ("scan", "python_loop"):
            lines.append(
                f"| DDIM-50 sampling | {name} | {scan[name]['seconds']:.2f} s "
                f"| {scan[name]['first_call_s']:.1f} s (1st call) | - |"
            )
    cache = r.get("compile_cache")
    if cache:
        for name in ("no_cache", "cold_cache", "warm_cache"):
            lines.append(
                f"| compile cache (fresh process) | {name} | - | {cache[name]['compile_s']:.1f} s "
                f"(+ {cache[name]['lower_s']:.1f} s tracing) | - |"
            )
    return lines


def quality_table(r: dict) -> list[str]:
    lines = [
        f"Quality vs NFE ({r['features']['backend']} features), {r['device']['device']}, "
        f"{r['training']['step']} training steps, {r['config']['num_samples']} samples, "
        f"floor (train vs test) {r['floor_train_vs_test']:.2f}:",
        "",
        "| setting | NFE | FD | sampling s |",
        "| --- | --- | --- | --- |",
    ]
    for name, row in r["settings"].items():
        lines.append(f"| {name} | {row['nfe']} | {row['fd']:.2f} | {row['seconds']:.1f} |")
    return lines


def profile_table(r: dict) -> list[str]:
    prof = r["jaxdiff"]
    lines = [
        f"Profile of the jaxdiff {r['what']} call, `{r['preset']}`, batch {r['batch']}, "
        f"{r['device']['device']}, load average at start {r['device']['load_average'][0]:.1f}: "
        f"{prof['wall_s_per_call'] * 1e3:.0f} ms per call, {prof['op_s_per_call'] * 1e3:.0f} ms "
        "of op time summed over XLA's threads:",
        "",
        "| category | ms per call | share |",
        "| --- | --- | --- |",
    ]
    for name, row in prof["categories"].items():
        lines.append(f"| {name} | {row['s'] * 1e3:.1f} | {row['share']:.1%} |")
    torch_ops = r.get("diffusers_top_ops")
    if torch_ops:
        ops = ", ".join(f"{o['op']} {o['self_ms']:.0f} ms" for o in torch_ops[:8])
        lines += ["", f"diffusers' step, top ops (self time): {ops}."]
    return lines


def xla_flags_table(r: dict) -> list[str]:
    lines = [
        f"XLA:CPU flags, `{r['preset']}`, train batch {r['batch']}, forward batch "
        f"{r['sample_batch']}, {r['device']['device']}, medians of {r['rounds']} fresh processes "
        f"per variant (alternating), load average at start {r['device']['load_average'][0]:.1f}:",
        "",
        "| variant | XLA_FLAGS | cores | train step | vs default | forward | vs default |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in r["rows"].items():
        lines.append(
            f"| {name} | `{row['flags'] or '-'}` | {row['cores']} | {row['train_s'] * 1e3:.0f} ms "
            f"| **{row['train_speedup']:.2f}x** | {row['forward_s'] * 1e3:.1f} ms "
            f"| **{row['forward_speedup']:.2f}x** |"
        )
    return lines


TABLES = {
    "xla_flags": xla_flags_table,
    "cpu_profile": profile_table,
    "train_throughput": train_table,
    "sampling_throughput": sampling_table,
    "practices": practices_table,
    "quality_vs_nfe": quality_table,
}


def main(paths: list[str]) -> None:
    for path in paths:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        print(f"<!-- {path} -->")
        print("\n".join(TABLES[result["benchmark"]](result)))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
