"""Text conditioning: the byte tokenizer, prompt checks (too long, out of grammar), the text
encoder's padding mask, the empty prompt as the null condition, guidance over prompts."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import guidance, latent, models
from jaxdiff.data import captions
from jaxdiff.text import prompts, tokenizer
from jaxdiff.text.encoder import TextEncoder
from jaxdiff.text.network import ConditionedDenoiser

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_tokenizer_is_byte_level_with_begin_end_and_padding():
    ids = tokenizer.encode("  A 7 ", max_len=8)
    assert ids.tolist() == [tokenizer.BOS, ord("a") + 3, ord(" ") + 3, ord("7") + 3, 2, 0, 0, 0]
    assert tokenizer.decode(tokenizer.encode("é, ünïcode!", 32)) == "é, ünïcode!"
    assert tokenizer.encode("", 4).tolist() == [1, 2, 0, 0]


def test_a_too_long_prompt_gets_a_clear_message():
    text = "a thick, slanted seven in the top left"  # 38 characters
    assert tokenizer.length(text) == 40
    tokenizer.encode(text, 40)  # fits exactly
    with pytest.raises(ValueError, match=r"too long: 38 characters .* at most 37 \(max_len=39"):
        prompts.encode_prompts([text], max_len=39)


def test_words_outside_the_caption_grammar_warn_and_known_ones_do_not():
    with pytest.warns(prompts.OutOfGrammarWarning, match=r"\['purple', 'striped'\]"):
        prompts.encode_prompts(["a purple, striped seven"], 48, captions.VOCABULARY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prompts.encode_prompts(
            ["A thick, right-leaning seven in the top left", ""], 48, captions.VOCABULARY
        )


def encoder_and_params(max_len=32):
    enc = TextEncoder(max_len=max_len, width=16, depth=2, num_heads=2)
    params = jax.jit(enc.init)(jax.random.key(0), jnp.zeros((1, max_len), jnp.int32))
    return Jitted(enc), params


def test_encoder_outputs_are_unchanged_by_extra_padding():
    enc, params = encoder_and_params()
    short = prompts.encode_prompts(["a thin seven", "a one"], 16)
    long = prompts.encode_prompts(["a thin seven", "a one"], 32)
    a, b = enc.apply(params, jnp.asarray(short)), enc.apply(params, jnp.asarray(long))
    np.testing.assert_allclose(a, b[:, :16], atol=1e-6)
    assert jnp.all(b[:, 16:] == 0) and jnp.all(a[1, 7:] == 0)  # padding outputs are zero
    assert float(jnp.abs(a[0, :14]).min()) > 0  # the real tokens are not


def test_a_token_after_the_end_would_change_the_output():
    """The padding test can fail: a non-padding id in the tail does change the prompt."""
    enc, params = encoder_and_params()
    tokens = prompts.encode_prompts(["a thin seven"], 32)
    changed = tokens.copy()
    changed[0, 20] = 50
    a, b = enc.apply(params, jnp.asarray(tokens)), enc.apply(params, jnp.asarray(changed))
    assert float(jnp.abs(a[0, :14] - b[0, :14]).max()) > 1e-4


@functools.cache  # one compile of init and apply for the tests that share it
def conditioned_net():
    unet = models.create("unet_8x8", ch=8, num_groups=4, context_dim=16, attn_resolutions=(8,))
    net = ConditionedDenoiser(unet, TextEncoder(max_len=32, width=16, depth=1, num_heads=2))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    tokens = jnp.asarray(prompts.encode_prompts(["a thin seven", "a one"], 32))
    params = jax.jit(lambda k: net.init(k, x, jnp.zeros(2), tokens=tokens))(jax.random.key(0))
    # zero-initialised output layers would hide the conditioning: give them weights
    params = jax.tree.map(lambda p: p + 0.05 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
    return Jitted(net), params, x, tokens


class Jitted:
    """``net.apply`` compiled (eager Flax is slow on 2 cores)."""

    def __init__(self, net):
        self.apply = jax.jit(net.apply)


def test_denoiser_ignores_padding_and_follows_the_prompt():
    net, params, x, tokens = conditioned_net()
    out = net.apply(params, x, jnp.ones(2), tokens=tokens)
    shorter = tokens[:, :16]
    np.testing.assert_allclose(net.apply(params, x, jnp.ones(2), tokens=shorter), out, atol=1e-5)
    other = jnp.asarray(prompts.encode_prompts(["a thick eight", "a two"], 32))
    assert float(jnp.abs(net.apply(params, x, jnp.ones(2), tokens=other) - out).max()) > 1e-3


def test_the_empty_prompt_is_the_null_condition():
    """Guided sampling with the prompt "" is the unguided model, for every w; the training
    dropout replaces prompts by exactly the same tokens."""
    net, params, x, _ = conditioned_net()
    s = latent.Settings(text=True, max_len=32)
    null = latent.null_cond(s)
    assert np.array_equal(null["tokens"], tokenizer.encode("", 32))
    model_fn = lambda x, t, tokens: net.apply(params, x, 999.0 * t, tokens=tokens)
    empty = jnp.asarray(prompts.encode_prompts(["", ""], 32))
    plain = model_fn(x, jnp.ones(2), tokens=empty)
    for w in (1.0, 4.0):
        guided = guidance.cfg_over(model_fn, w, null)(x, jnp.ones(2), tokens=empty)
        np.testing.assert_allclose(guided, plain, atol=1e-5)
    dropped = latent.drop_conditions(jax.random.key(0), {"tokens": empty + 5}, null, 0.999999)
    assert np.array_equal(dropped["tokens"], empty)


def test_guidance_over_a_prompt_and_a_negative_prompt_is_the_cfg_formula():
    model = lambda x, t, tokens: x * tokens[:, :1].astype(jnp.float32)
    x, tokens = jnp.ones((2, 3)), jnp.array([[3, 0], [5, 0]])
    negative = jnp.array([2, 0])
    out = guidance.cfg_over(model, 2.0, {"tokens": negative})(x, 0.5, tokens=tokens)
    np.testing.assert_allclose(out, [[3 * 3 - 2 * 2] * 3, [3 * 5 - 2 * 2] * 3])
    with pytest.raises(ValueError, match=r"needs \['tokens'\]="):
        guidance.cfg_over(model, 2.0, {"tokens": negative})(x, 0.5)
    with pytest.raises(ValueError, match="w must be >= 0"):
        guidance.cfg_over(model, -1.0, {"tokens": negative})
