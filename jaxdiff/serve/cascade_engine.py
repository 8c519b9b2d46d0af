"""A served cascade: the base model's batch goes on through super-resolution stages.

``python -m jaxdiff.serve --workdir=BASE --sr=SR_RUN`` serves the cascade's last stage.
A request's method and steps choose the base sampler; each SR stage samples with its own
config's sampler, guidance and augmentation level (non-truncated conditioning
augmentation, :mod:`jaxdiff.cascade`). Previews name their stage, so the event stream
shows the low-resolution result as it forms, then the high-resolution one.

Rows stay independent, as in :class:`~jaxdiff.serve.engine.Engine`: SR stage i of row r
draws its augmentation noise and sampler noise from ``fold_in(key(seed_r), i)`` alone.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxdiff import cascade, samplers, super_res
from jaxdiff.serve.engine import Engine
from jaxdiff.training import components


class CascadeEngine(Engine):
    """An :class:`Engine` of a base model followed by super-resolution stages.

    Args:
      run: the base model (a ``training.restore.Run`` or a shipped model's run).
      stages: the SR stages (``cascade.Stage``, non-truncated), in order.
      **engine_args: ``batch_sizes`` and ``preview_every`` of :class:`Engine`.

    Raises:
      ValueError: stages that do not chain (see ``cascade.plan``), or a truncated one.
    """

    def __init__(self, run, stages: Sequence[cascade.Stage], **engine_args):
        super().__init__(run, **engine_args)
        if any(s.truncated for s in stages):
            raise ValueError("a served cascade feeds each SR stage clean images: no truncated.")
        cascade.plan([cascade.Stage(run), *stages])
        self.stages = list(stages)
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self._stage_params = [jax.device_put(s.model.params, replicated) for s in stages]
        self._sr_programs: dict[tuple[int, int], Callable] = {}

    @property
    def stage_shapes(self) -> list[tuple[int, ...]]:
        return super().stage_shapes + [s.image_shape for s in self.stages]

    def _run_stages(self, program, seeds, labels, weights) -> jax.Array:
        x = super()._run_stages(program, seeds, labels, weights)
        for i in range(1, len(self.stages) + 1):
            self._stage = i
            x = self._sr_program(i, len(seeds))(self._stage_params[i - 1], seeds, labels, x)
        return x

    def _sr_program(self, index: int, batch: int) -> Callable:
        if (index, batch) not in self._sr_programs:
            self._sr_programs[index, batch] = self._compile_sr(self.stages[index - 1], index)
        return self._sr_programs[index, batch]

    def _compile_sr(self, stage: cascade.Stage, index: int) -> Callable:
        """``sample(params, seeds (B,), labels (B,), low (B, h, w, C)) -> (B, H, W, C)``."""
        config, net, process = stage.model.config, stage.model.net, stage.model.process
        s = components.sampler_settings(config, stage.method, stage.num_steps, stage.guidance)
        options = components.sample_options(config, s, stage.options)
        if samplers.METHODS[s["method"]].stepper is not None:
            options.update(preview_fn=self._preview, preview_every=self.preview_every)
        classes, level = components.num_classes(config), stage.level()

        def sample(params, seeds, labels, low):
            model_fn = components.guided_model_fn(config, net, process, params, s["guidance"])
            keys = jax.vmap(lambda seed: jax.random.fold_in(jax.random.key(seed), index))(seeds)
            k_aug, k_sample = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
            cond = _row_conditioning(k_aug, low, level, process)
            if classes:
                cond["label"] = labels
            x, _ = samplers.sample(
                k_sample, model_fn, process, components.example_shape(config, len(seeds)),
                method=s["method"], num_steps=s["num_steps"], kind=config.sample.kind,
                **options, **cond,
            )  # fmt: skip
            return jnp.clip(x, -1.0, 1.0)

        rows = NamedSharding(self.mesh, PartitionSpec("batch"))
        return jax.jit(sample, in_shardings=(None, rows, rows, rows), out_shardings=rows)


def _row_conditioning(keys, low, level, process) -> dict:
    """``super_res.conditioning`` with row r's augmentation noise from ``keys[r]`` alone."""

    def one(key, image):
        cond = super_res.conditioning(key, image[None], level, process)
        return {k: v[0] for k, v in cond.items()}

    return jax.vmap(one)(keys, low)
