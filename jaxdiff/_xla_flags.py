"""What the ``python -m jaxdiff.X`` entry points set up before JAX starts (:func:`prepare`):
XLA:CPU's convolution flag and the persistent compilation cache.

On jaxlib 0.10-0.11, XLA:CPU hands convolutions to YNNPACK, whose convolutions ran on one
core of a 2-core machine (pinning the process to one core barely slowed the network
forward). XLA's own Eigen convolutions use every core: with
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` (YNNPACK keeps
everything else), ``benchmarks/xla_flags.py`` measured the MNIST U-Net's training step
1.31x and its forward (one sampler step) 1.44x faster on an idle 2-core AMD EPYC
(``benchmarks/results/xla_flags_cpu.json``).

Int8 convolutions (qwix W8A8, ``jaxdiff.evaluate --quantize=int8``) are the exception: the
Eigen path has no fast int8 kernel, and a W8A8 sampler call ran ~21x slower with the flag
than without; such runs pass ``int8=True`` and keep YNNPACK's convolutions
(``jaxdiff.evaluate`` then scores the int8 samples in a second process, with the flag).

The flag is added only when all of these hold: ``int8`` is False,
``JAXDIFF_XLA_CPU_DEFAULTS`` is not ``0``, ``XLA_FLAGS`` does not already set it, and the
installed jaxlib is one where it was measured (an unknown flag would abort XLA at
start-up). XLA reads ``XLA_FLAGS`` once, when its first backend starts, so call
:func:`apply_cpu_defaults` before any JAX computation. The flag only concerns the CPU
backend; on GPUs and TPUs it changes nothing.

The persistent compilation cache (:func:`enable_compilation_cache`) keeps compiled
programs on disk, so a second run of a command skips the compiles the first one did
(samplers, training step, Inception): ``$JAXDIFF_COMPILATION_CACHE`` names the folder
(default ``$JAXDIFF_CACHE/xla``, i.e. ``~/.cache/jaxdiff/xla``); ``0`` turns it off. A
cache folder that was already configured (``JAX_COMPILATION_CACHE_DIR``) is kept.
"""

import os

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
CPU_DEFAULTS = f"{YNN_FLAG}=-individual_convolution"
OPT_OUT = "JAXDIFF_XLA_CPU_DEFAULTS"
CACHE_ENV = "JAXDIFF_COMPILATION_CACHE"
CACHE_MIN_COMPILE_SECONDS = 0.5  # smaller programs compile faster than they load
MEASURED_JAXLIB = ((0, 10), (0, 11))  # (major, minor) versions the flag was measured on


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        from jaxlib import version
    except ImportError:
        return None
    major, minor = version.__version__.split(".")[:2]
    return int(major), int(minor)


def apply_cpu_defaults(environ=os.environ, *, int8: bool = False) -> bool:
    """Adds :data:`CPU_DEFAULTS` to ``XLA_FLAGS`` when it is safe and wanted.

    Args:
      environ: the environment to edit (``os.environ``; a dict in tests).
      int8: the process will run int8 convolutions: leave them to YNNPACK (no flag).

    Returns:
      Whether the flag was added.
    """
    flags = environ.get("XLA_FLAGS", "")
    if int8 or environ.get(OPT_OUT, "1") == "0" or YNN_FLAG in flags:
        return False
    if _jaxlib_version() not in MEASURED_JAXLIB:
        return False
    environ["XLA_FLAGS"] = f"{flags} {CPU_DEFAULTS}".strip()
    return True


def enable_compilation_cache(environ=os.environ) -> str | None:
    """Points JAX's persistent compilation cache at a folder; returns it (None: off).

    Args:
      environ: the environment to read (``os.environ``; a dict in tests).
    """
    import jax

    value = environ.get(CACHE_ENV, "")
    if value == "0":
        return None
    configured = getattr(jax.config, "jax_compilation_cache_dir", None)
    if configured:
        return configured
    if not value:
        cache_root = environ.get("JAXDIFF_CACHE", os.path.expanduser("~/.cache/jaxdiff"))
        value = os.path.join(cache_root, "xla")
    jax.config.update("jax_compilation_cache_dir", value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    return value


def prepare(*, int8: bool = False) -> None:
    """An entry point's set-up, before any JAX computation: :func:`apply_cpu_defaults`
    (``int8``: see there), then :func:`enable_compilation_cache`."""
    apply_cpu_defaults(int8=int8)
    enable_compilation_cache()
