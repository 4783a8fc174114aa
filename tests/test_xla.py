"""jaxvis._xla.jit: XLA:CPU options that keep convolutions off YNNPACK, same values as jax.jit."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvis import _xla


def conv_and_input_grad(x: jax.Array, k: jax.Array, strides: tuple[int, int], padding: str):
    def f(x: jax.Array) -> jax.Array:
        y = lax.conv_general_dilated(
            x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.tanh(y)

    y, vjp = jax.vjp(f, x)
    return y, vjp(jnp.cos(y))[0]


def reference_conv(x: np.ndarray, k: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """Direct float64 loops: an independent reference for the forward convolution."""
    kh, kw, _, cout = k.shape
    if padding == "SAME":
        h, w = x.shape[1:3]
        out_h, out_w = -(-h // stride), -(-w // stride)
        ph = max((out_h - 1) * stride + kh - h, 0)
        pw = max((out_w - 1) * stride + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, cout))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", window, k)
    return out


@pytest.mark.parametrize(
    "shape, kernel, strides, padding",
    [
        ((2, 16, 16, 3), (3, 3, 3, 8), (1, 1), "SAME"),
        ((2, 15, 15, 8), (5, 5, 8, 4), (2, 2), "SAME"),
        ((1, 12, 12, 16), (3, 3, 16, 32), (1, 1), "VALID"),
    ],
)
def test_jit_matches_jax_jit_and_a_direct_convolution(shape, kernel, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    k = (0.3 * rng.standard_normal(kernel)).astype(np.float32)
    fn = lambda x, k: conv_and_input_grad(x, k, strides, padding)  # noqa: E731
    y, g = _xla.jit(fn)(x, k)
    y0, g0 = jax.jit(fn)(x, k)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g0), rtol=1e-5, atol=1e-5)
    ref = np.tanh(reference_conv(x.astype(np.float64), k.astype(np.float64), strides[0], padding))
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-5)


def test_cpu_programs_keep_convolutions_off_ynnpack():
    assert jax.default_backend() == "cpu"
    assert _xla.compiler_options() == _xla.CPU_OPTIONS
    x, k = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    fn = lambda x, k: conv_and_input_grad(x, k, (1, 1), "SAME")  # noqa: E731
    text = _xla.jit(fn).lower(x, k).compile().as_text()
    convolutions = [line for line in text.splitlines() if " convolution(" in line]
    assert len(convolutions) == 2, text  # forward and input gradient, as XLA's own ops
    ynn_convolutions = [
        line for line in text.splitlines() if "__ynn_fusion" in line and "conv_general" in line
    ]
    assert ynn_convolutions == []


def _options_in_fresh_process(env_value: str) -> str:
    code = "from jaxvis import _xla; print(_xla.compiler_options())"
    env = {**os.environ, _xla.ENV: env_value}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_environment_variable_switches_the_options_off():
    assert _options_in_fresh_process("0") == "None"
    assert _options_in_fresh_process("off") == "None"
    assert _options_in_fresh_process("") == repr(_xla.CPU_OPTIONS)


def test_a_jaxvis_function_inside_a_users_jit_and_grad():
    x = jnp.linspace(-1.0, 1.0, 5)
    square = _xla.jit(lambda v: jnp.sum(jnp.sin(v) ** 2))
    expected = 2 * np.sin(np.asarray(x)) * np.cos(np.asarray(x))
    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(square))(x)), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(square)(x)), expected, rtol=1e-6)


def test_errors_of_the_function_itself_are_not_swallowed():
    def bad(v: jax.Array) -> jax.Array:
        raise ValueError("v must be positive")

    with pytest.raises(ValueError, match="v must be positive"):
        _xla.jit(bad)(jnp.ones(2))
    with pytest.raises(ValueError, match="v must be positive"):
        jax.jit(_xla.jit(bad))(jnp.ones(2))
