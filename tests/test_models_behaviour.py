"""Mixed precision, gradients, conditioning (labels, null label, context mask), dropout, remat.

Zero-initialised layers would hide most effects (the output starts at exactly 0), so these
tests use parameters drawn at random for every leaf, zero-initialised ones included: NumPy
normals scaled by 1/sqrt(fan_in) (no PRNG compilation, so the tests stay fast).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import models

KEY = {"params": jax.random.key(0)}


pytestmark = pytest.mark.usefixtures("fast_compiles")


NUM_CLASSES, CONTEXT_DIM = 10, 12


def random_params(net, x, s, seed=0, **cond):
    """Every parameter random (zero-init layers perturbed), fan-in scaled, float32."""
    shapes = jax.eval_shape(functools.partial(net.init, KEY, **cond), x, s)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            std = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, std, leaf.shape).astype(np.float32)
        if name == "scale":
            return (1.0 + 0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
        if name == "W":  # Fourier frequencies keep their scale
            return (16.0 * rng.normal(size=leaf.shape)).astype(np.float32)
        return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)  # biases, tables

    return {"params": jax.tree_util.tree_map_with_path(draw, shapes)}


def rel_l2(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


CASES = {
    # DDPM-style U-Net with attention (the 8x8 preset, class- and text-conditional).
    "unet": ("unet_8x8", (2, 8, 8, 1), {}),
    # NCSN++-style: BigGAN blocks, FIR resampling, Fourier features, skip rescale.
    "ncsnpp": (
        "ncsnpp",
        (2, 8, 8, 3),
        dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4),
    ),
    "dit": ("dit_28x28", (2, 8, 8, 2), dict(depth=2)),
}


def inputs(shape, seed=1):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k1, shape)
    s = jnp.array([0.5, 3.0])[: shape[0]]
    cond = dict(
        label=jnp.array([3, 7])[: shape[0]],
        context=jax.random.normal(k2, (shape[0], 4, CONTEXT_DIM)),
        context_mask=jnp.array([[True, True, False, False], [True, True, True, False]]),
    )
    return x, s, cond


@functools.cache
def setup(case, dtype=jnp.float32):
    name, shape, kw = CASES[case]
    net = models.create(name, num_classes=NUM_CLASSES, context_dim=CONTEXT_DIM, dtype=dtype, **kw)
    x, s, cond = inputs(shape)
    variables = random_params(net, x, s, **cond)
    fn = jax.jit(lambda v, x, s, cond: net.apply(v, x, s, **cond))
    return net, variables, x, s, cond, fn


@pytest.mark.parametrize("case", sorted(CASES))
def test_bfloat16_matches_float32_and_grads_are_finite(case):
    _, variables, x, s, cond, f32 = setup(case)
    net16 = setup(case, jnp.bfloat16)[0]
    out32 = f32(variables, x, s, cond)
    out16 = jax.jit(lambda v: net16.apply(v, x, s, **cond))(variables)
    assert out16.dtype == jnp.float32  # the final output is float32
    assert jnp.linalg.norm(out32) > 0
    assert rel_l2(out16, out32) < 2e-2
    loss = lambda p: jnp.mean(jnp.square(net16.apply({"params": p}, x, s, **cond) - x))
    grads = jax.jit(jax.grad(loss))(variables["params"])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))  # float32 params


@pytest.mark.parametrize("case", sorted(CASES))
def test_labels_condition_and_null_label_works(case):
    _, variables, x, s, cond, fn = setup(case)
    base = fn(variables, x, s, cond)
    other = fn(variables, x, s, dict(cond, label=jnp.array([4, 1])))
    null = fn(variables, x, s, dict(cond, label=jnp.array([NUM_CLASSES, NUM_CLASSES])))
    for out in (other, null):
        assert jnp.all(jnp.isfinite(out))
        per_example = jnp.linalg.norm((out - base).reshape(2, -1), axis=1)
        assert jnp.all(per_example > 1e-3 * jnp.linalg.norm(base.reshape(2, -1), axis=1))
    # label=None on a class-conditional net means the null class.
    net = setup(case)[0]
    no_label = jax.jit(lambda v: net.apply(v, x, s, context=cond["context"]))(variables)
    null_label = jnp.full((2,), NUM_CLASSES)
    unmasked_null = fn(variables, x, s, dict(cond, label=null_label, context_mask=None))
    np.testing.assert_allclose(no_label, unmasked_null, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_padded_context_tokens_are_ignored(case):
    _, variables, x, s, cond, fn = setup(case)
    base = fn(variables, x, s, cond)
    mask = cond["context_mask"]
    noise = 100.0 * jax.random.normal(jax.random.key(5), cond["context"].shape)
    padded_changed = jnp.where(mask[..., None], cond["context"], noise)
    out = fn(variables, x, s, dict(cond, context=padded_changed))
    np.testing.assert_allclose(out, base, rtol=1e-5, atol=1e-5)
    # ...while real tokens matter, and so does the mask itself.
    real_changed = jnp.where(mask[..., None], noise, cond["context"])
    assert rel_l2(fn(variables, x, s, dict(cond, context=real_changed)), base) > 1e-3
    no_mask = fn(variables, x, s, dict(cond, context_mask=jnp.ones_like(mask)))
    assert rel_l2(no_mask, base) > 1e-3
    # An empty context (all tokens padded, e.g. a null prompt) is ignored entirely.
    empty = jnp.zeros_like(mask)
    a = fn(variables, x, s, dict(cond, context_mask=empty))
    b = fn(variables, x, s, dict(cond, context=noise, context_mask=empty))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conditioning_errors_name_the_preset():
    net = models.create("unet_8x8")
    x, s = jnp.zeros((2, 8, 8, 1)), jnp.ones((2,))
    with pytest.raises(ValueError, match="unet_8x8: got label= but num_classes=0"):
        jax.eval_shape(lambda: net.init(KEY, x, s, label=jnp.zeros((2,), jnp.int32)))
    with pytest.raises(ValueError, match="unet_8x8: got context= but context_dim=0"):
        jax.eval_shape(lambda: net.init(KEY, x, s, context=jnp.zeros((2, 3, 4))))
    net = models.create("dit_28x28", num_classes=3, context_dim=4)
    with pytest.raises(ValueError, match="dit_28x28: context must be \\(2, L, 4\\); got"):
        jax.eval_shape(lambda: net.init(KEY, x, s, context=jnp.zeros((2, 3, 5))))
    with pytest.raises(ValueError, match="dit_28x28: context_dim=4 needs context="):
        jax.eval_shape(lambda: net.init(KEY, x, s))
    with pytest.raises(ValueError, match="dit_28x28: label must be ints of shape \\(2,\\)"):
        jax.eval_shape(
            lambda: net.init(KEY, x, s, label=jnp.zeros((2,)), context=jnp.ones((2, 1, 4)))
        )


def test_dropout_is_random_in_training_and_off_in_eval():
    net = models.create("unet_8x8", dropout=0.5)
    x, s = jax.random.normal(jax.random.key(0), (2, 8, 8, 1)), jnp.ones((2,))
    variables = random_params(net, x, s)
    run = jax.jit(
        lambda v, k, train: net.apply(v, x, s, train=train, rngs={"dropout": k}),
        static_argnums=2,
    )
    a, b = run(variables, jax.random.key(1), True), run(variables, jax.random.key(2), True)
    assert rel_l2(a, b) > 1e-3
    eval_out = jax.jit(net.apply)(variables, x, s)
    np.testing.assert_allclose(run(variables, jax.random.key(1), False), eval_out, atol=1e-5)


@pytest.mark.parametrize(
    "name, small",
    [
        ("unet_8x8", dict(ch_mult=(1,), attn_resolutions=(8,), dropout=0.1)),
        ("dit_28x28", dict(depth=2)),
    ],
)
def test_remat_gives_the_same_gradients(name, small):
    x, s = jax.random.normal(jax.random.key(0), (2, 8, 8, 1)), jnp.ones((2,))
    nets = [models.create(name, remat=r, **small) for r in (False, True)]
    variables = random_params(nets[0], x, s)

    def grad(net):
        def loss(p):
            out = net.apply({"params": p}, x, s, train=True, rngs={"dropout": jax.random.key(3)})
            return jnp.sum(out**2)

        return jax.jit(jax.grad(loss))(variables["params"])

    g0, g1 = grad(nets[0]), grad(nets[1])
    # Same math, different evaluation order: float32 round-off relative to the gradient scale.
    flat0, flat1 = (jnp.concatenate([g.ravel() for g in jax.tree.leaves(g)]) for g in (g0, g1))
    np.testing.assert_allclose(flat1, flat0, atol=1e-5 * float(jnp.abs(flat0).max()))
