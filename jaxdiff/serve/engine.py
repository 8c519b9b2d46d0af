"""The server's sampling engine: one compiled sampler call per batch of requests.

A batch mixes requests that share what fixes the compiled program (method, num_steps);
each row keeps its own seed, class and guidance weight (the samplers' per-example keys
and the per-example w of ``guidance.cfg``), so a request's images do not depend on the
requests batched with it beyond floating-point noise: XLA promises no bitwise equality
across batch sizes, and ``tests/test_serve.py`` states the tolerance. Batches are padded
to a few fixed sizes (one compile each) and sharded over the local devices (a 1-D
``Mesh`` over ``jax.local_devices()``, the batch axis split with ``NamedSharding``).

Progressive previews: every program is compiled with the samplers' ``preview_fn``, a
host callback that receives the batch's x0 estimate every ``preview_every`` steps; the
engine hands each row's estimate to the callback of the request that owns the row.
"""

import threading
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdiff import samplers
from jaxdiff.evaluation.run import to_uint8
from jaxdiff.training import components

# (step, x0 rows (n, H, W, C) in [-1, 1], cascade stage) -> None: one request's preview
PreviewFn = Callable[[int, np.ndarray, int], None]


class Engine:
    """Batched sampling of one model (a ``training.restore.Run``: config, net, process,
    params) with per-row seeds, classes and guidance.

    Args:
      run: the model (``pretrained.load(name).as_run()`` or ``restore.load_run(workdir)``).
      batch_sizes: the padded batch sizes, one compiled program each per (method, steps);
        each is rounded up to a multiple of the local device count.
      preview_every: steps between progressive previews (and at the last step).
    """

    def __init__(self, run, *, batch_sizes: Sequence[int] = (1, 4, 16, 64), preview_every=4):
        self.run, self.config = run, run.config
        self.num_classes = int(components.num_classes(run.config) or 0)
        devices = jax.local_devices()
        self.mesh = Mesh(np.asarray(devices), ("batch",))
        n_dev = len(devices)
        self.batch_sizes = sorted({-(-int(b) // n_dev) * n_dev for b in batch_sizes})
        self.preview_every = int(preview_every)
        self.params = jax.device_put(run.params, NamedSharding(self.mesh, PartitionSpec()))
        self._programs: dict[tuple, Callable] = {}
        self._settings: dict[tuple, tuple[str, int, dict]] = {}
        self._lock = threading.Lock()  # one batch at a time: previews route by row
        self._rows: list[PreviewFn | None] = []
        self._stage = 0  # the cascade stage being sampled (previews carry it)

    @property
    def stage_shapes(self) -> list[tuple[int, ...]]:
        """(H, W, C) of each stage's images, the served (last) one last."""
        return [tuple(components.example_shape(self.config, 1)[1:])]

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def settings(self, method: str | None, num_steps: int | None) -> tuple[str, int, dict]:
        """(method, num_steps, options) after the model's defaults; ValueError if invalid.

        Resolved once per (method, num_steps): the request check and every batch share it.
        """
        key = (method or None, num_steps or None)
        if key not in self._settings:
            s = components.sampler_settings(self.config, key[0], key[1], 0.0)
            if s["method"] not in samplers.METHODS:
                valid = sorted(samplers.METHODS)
                raise ValueError(f"Unknown method {s['method']!r}; valid: {valid}.")
            self._settings[key] = (s["method"], int(s["num_steps"]), dict(s["options"]))
        method, num_steps, options = self._settings[key]
        return method, num_steps, dict(options)

    def padded_size(self, n: int) -> int:
        """The smallest compiled batch size >= n."""
        for b in self.batch_sizes:
            if b >= n:
                return b
        raise ValueError(f"a batch of {n} exceeds the largest batch size {self.max_batch}.")

    def generate(self, method, num_steps, seeds, labels, weights, previews=None) -> np.ndarray:
        """uint8 images (n, H, W, C), row i drawn from seed i with class i and weight i.

        Args:
          method, num_steps: the sampler (None: the model's default).
          seeds: (n,) int seeds, one per image.
          labels: (n,) classes in [0, num_classes) (ignored by an unconditional model).
          weights: (n,) guidance weights >= 0.
          previews: (n,) callbacks ``fn(step, x0 (1, H, W, C), stage)`` or None per row
            (``stage``: which model of a cascade made the estimate, 0 for the first).
        """
        method, num_steps, options = self.settings(method, num_steps)
        n = len(seeds)
        b = self.padded_size(n)
        pad = lambda a, dtype: np.resize(np.asarray(a, dtype), b) if n else np.zeros(b, dtype)
        args = (pad(seeds, np.int32), pad(labels, np.int32), pad(weights, np.float32))
        program = self._program(method, num_steps, b, tuple(sorted(options.items())))
        with self._lock:
            self._rows, self._stage = list(previews or [None] * n), 0
            try:
                images = np.asarray(jax.device_get(self._run_stages(program, *args)))[:n]
            finally:
                self._rows = []
        return to_uint8(images)

    def _run_stages(self, program, seeds, labels, weights) -> jax.Array:
        """The padded batch's images (b, H, W, C) in [-1, 1] (a cascade adds its stages)."""
        return program(self.params, seeds, labels, weights)

    def _preview(self, step, t, x0) -> None:
        """Host side of the samplers' preview callback: row i goes to its request."""
        del t
        x0 = np.asarray(x0)
        for i, fn in enumerate(self._rows):
            if fn is not None:
                fn(int(step), np.clip(x0[i : i + 1], -1.0, 1.0), self._stage)

    def _program(self, method: str, num_steps: int, batch: int, options: tuple) -> Callable:
        key = (method, num_steps, batch, options)
        if key not in self._programs:
            self._programs[key] = self._compile(method, num_steps, batch, dict(options))
        return self._programs[key]

    def _compile(self, method, num_steps, batch, options) -> Callable:
        config, net, process = self.config, self.run.net, self.run.process
        options = components.sample_options(config, {"options": options})
        shape = components.example_shape(config, batch)
        if samplers.METHODS[method].stepper is not None:  # ode_adaptive has no fixed steps
            options.update(preview_fn=self._preview, preview_every=self.preview_every)

        def sample(params, seeds, labels, weights):
            model_fn = components.guided_model_fn(config, net, process, params, weights)
            cond = {"label": labels} if self.num_classes else {}
            x, _ = samplers.sample(
                seeds,
                model_fn,
                process,
                shape,
                method=method,
                num_steps=num_steps,
                kind=config.sample.kind,
                **options,
                **cond,
            )
            return jnp.clip(x, -1.0, 1.0)

        rows = NamedSharding(self.mesh, PartitionSpec("batch"))
        return jax.jit(sample, in_shardings=(None, rows, rows, rows), out_shardings=rows)
