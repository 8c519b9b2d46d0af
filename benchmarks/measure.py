"""Measurement helpers shared by the benchmark scripts: device naming, peaks, timing, JSON.

- :func:`device_info` names the device (GPU kind, or the CPU model from /proc/cpuinfo) and
  records the load average, thread counts and library versions.
- :func:`peak_flops` gives the device's dense peak (bf16 for GPUs; a labelled estimate for
  CPUs, whose clock /proc/cpuinfo often hides).
- :func:`xla_cost` reads FLOPs and memory from XLA's analysis of a compiled function.
- :func:`alternate` times two (or more) competitors in alternating repetitions, so a shared
  or throttling machine affects both sides alike; medians are reported.
"""

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' datasheets.
GPU_PEAKS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is 756e12
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
}
# fp32 FLOP per cycle per core for CPU vector units (two FMA pipes x lanes x 2).
CPU_FLOP_PER_CYCLE = {"avx512": 32, "avx2": 32, "sse": 8}
ASSUMED_CPU_GHZ = 3.0


def cpu_model() -> str:
    """The CPU's model name (and family/model numbers) from /proc/cpuinfo."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown CPU"
    name = fields.get("model name", "unknown CPU")
    return f"{name} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def device_info() -> dict:
    """Describes where the benchmark runs (stored in every results file)."""
    import torch

    dev = jax.devices()[0]
    info = {
        "jax_backend": jax.default_backend(),
        "jax_device": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if torch.cuda.is_available():
        info["torch_device"] = torch.cuda.get_device_name(0)
    try:
        import diffusers

        info["versions"]["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    info["device"] = info["jax_device"] if info["jax_backend"] == "gpu" else info["cpu"]
    return info


def peak_flops() -> tuple[float, str]:
    """(peak FLOP/s, how it was obtained) for jax's default device.

    GPUs: the dense bf16 tensor-core peak of a known card (NaN when unknown). CPUs: an
    estimate, cores x ASSUMED_CPU_GHZ x fp32 FLOP/cycle of the widest vector unit, labelled
    as such (the clock is assumed, /proc/cpuinfo does not state it on this machine).
    """
    dev = jax.devices()[0]
    if jax.default_backend() == "gpu":
        for name, peak in GPU_PEAKS.items():
            if name in dev.device_kind:
                return peak, f"datasheet dense bf16 peak of {name}"
        return float("nan"), f"unknown peak for {dev.device_kind}"
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    unit = next((u for u in CPU_FLOP_PER_CYCLE if u in flags), "sse")
    per_cycle, cores = CPU_FLOP_PER_CYCLE[unit], os.cpu_count() or 1
    peak = cores * ASSUMED_CPU_GHZ * 1e9 * per_cycle
    return peak, (
        f"ESTIMATE: {cores} cores x {ASSUMED_CPU_GHZ} GHz (assumed) x {per_cycle} fp32 "
        f"FLOP/cycle ({unit})"
    )


def xla_cost(compiled) -> dict:
    """FLOPs and memory of a compiled jax function (NaN/None where XLA gives none).

    Returns:
      ``{"flops": per call, "bytes_accessed": ..., "xla_memory_bytes": arguments + outputs
      + temporaries - aliased (donated) bytes}``.
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    out = {
        "flops": float(cost.get("flops", float("nan"))),
        "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
        "xla_memory_bytes": None,
    }
    mem = compiled.memory_analysis()
    if mem is not None:
        out["xla_memory_bytes"] = int(
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    return out


def jax_peak_memory() -> int | None:
    """Peak bytes in use on jax's first device (GPU/TPU; None on CPU)."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of ``fn()`` (which must block until its work is done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Times several competitors in alternating repetitions (A B A B ...).

    Args:
      runners: name -> a blocking callable doing one timed unit of work (e.g. k steps).
      repeats: repetitions of each.

    Returns:
      name -> ``{"median_s", "min_s", "all_s"}``.
    """
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            times[name].append(timed(fn))
    return {
        name: {"median_s": statistics.median(ts), "min_s": min(ts), "all_s": ts}
        for name, ts in times.items()
    }


def write_json(path: str, payload: dict) -> None:
    """Writes a results file (creating its folder), device info included by the caller."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, default=float)
        f.write("\n")


def set_torch_threads(threads: int | None = None) -> int:
    """Gives torch the same thread count as XLA's CPU backend (all cores by default)."""
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads
