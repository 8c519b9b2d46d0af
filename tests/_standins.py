"""Private stand-ins for the networks and losses modules, for training tests only.

Used until (or in place of) ``jaxdiff.models`` / ``jaxdiff.losses`` where a test needs a
network or loss that is tiny and fast. ``install(monkeypatch)`` routes the training
components to them.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class TinyNet(nn.Module):
    """F(x, noise_level, label) -> like x: one conv, a noise-level and label embedding."""

    num_classes: int | None = None
    features: int = 8
    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, noise_level, label=None, train=False):
        h = nn.Conv(self.features, (3, 3))(x)
        emb = nn.Dense(self.features)(jnp.sin(noise_level[:, None] / 100.0))
        if self.num_classes is not None and label is not None:
            emb = emb + nn.Embed(self.num_classes + 1, self.features)(label)
        h = nn.swish(h + emb[:, None, None, :])
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Conv(x.shape[-1], (3, 3))(h)


def create_model(config):
    return TinyNet(num_classes=config.model.num_classes or None)


def eps_loss(process):
    """Plain eps-prediction loss with uniform t (the losses module's contract)."""

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        k_t, k_n = jax.random.split(key)
        if t is None:
            t = jax.random.uniform(k_t, x0.shape[:1], minval=1e-3, maxval=1.0)
        xt, noise = process.sample_marginal(k_n, x0, t)
        per = jnp.mean(jnp.square(model_fn(xt, t, **cond) - noise), axis=(1, 2, 3))
        if t_weights is not None:
            per = per * t_weights
        return jnp.mean(per), {"loss": jnp.mean(per), "loss_per_example": per, "t": t}

    return loss_fn


def install(monkeypatch):
    """Routes training.components' network and loss builders to the stand-ins."""
    from jaxdiff.training import components

    monkeypatch.setattr(components, "build_model", create_model)
    monkeypatch.setattr(components, "build_loss", lambda config, process: eps_loss(process))
