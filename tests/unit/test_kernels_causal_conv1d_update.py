"""lobkernels.causal_conv1d_update against causal_conv1d_update_ref (the causal-conv1d package's semantics): the
output and the in-place shift of conv_state, for one step and a few, widths 2..4, state_len >= width - 1."""

import os
import subprocess
import sys

import pytest
import torch

from lobkernels import causal_conv1d_update, causal_conv1d_update_ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

pytestmark = pytest.mark.usefixtures("triton_interpreter")


TOL = {torch.float32: (3e-4, 1e-3), torch.float16: (5e-3, 1e-2), torch.bfloat16: (1e-2, 5e-2)}


def make_inputs(batch, dim, seqlen, width, state_len, bias=True, dtype=torch.float32, seed=0):
    """seqlen None: the one-step form, x (batch, dim)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE, dtype)

    x = randn(batch, dim) if seqlen is None else randn(batch, dim, seqlen)
    return dict(x=x, conv_state=randn(batch, dim, state_len), weight=randn(dim, width),
                bias=randn(dim) if bias else None)


def run_both(inputs, activation):
    state = inputs["conv_state"].clone()
    state_ref = inputs["conv_state"].clone()
    out = causal_conv1d_update(**{**inputs, "conv_state": state}, activation=activation)
    out_ref = causal_conv1d_update_ref(**{**inputs, "conv_state": state_ref}, activation=activation)
    return out, state, out_ref, state_ref


@pytest.mark.parametrize(
    "batch,dim,seqlen,width,state_len",
    [
        (3, 70, None, 4, 3),  # Mamba-LOB's decode step: d_conv 4, state_len = d_conv - 1; dim over one block
        (1, 5, 1, 4, 3),
        (2, 16, 2, 4, 3),
        (2, 16, 5, 4, 3),  # more new steps than the window holds
        (2, 16, 3, 2, 1),
        (2, 16, 2, 3, 6),  # a longer window than the conv needs
        (2, 16, 2, 1, 0),  # width 1: no window at all
    ],
)
@pytest.mark.parametrize("activation,bias", [(None, False), ("silu", True)])
def test_matches_reference_and_shifts_state(batch, dim, seqlen, width, state_len, activation, bias):
    inputs = make_inputs(batch, dim, seqlen, width, state_len, bias=bias)
    out, state, out_ref, state_ref = run_both(inputs, activation)
    assert out.shape == inputs["x"].shape
    torch.testing.assert_close(out, out_ref, rtol=3e-4, atol=1e-3)
    assert torch.equal(state, state_ref)  # a pure shift: exact
    # The newest steps end the window: conv_state[..., -1] is the last x, in place on the tensor passed in.
    x3 = inputs["x"] if seqlen is not None else inputs["x"][..., None]
    kept = min(state_len, x3.shape[-1])
    assert torch.equal(state[..., state_len - kept:], x3[..., x3.shape[-1] - kept:])


def test_swish_is_silu():
    inputs = make_inputs(2, 8, None, 4, 3)
    out_swish, _, out_ref, _ = run_both(inputs, "swish")
    torch.testing.assert_close(out_swish, out_ref, rtol=3e-4, atol=1e-3)
    torch.testing.assert_close(out_swish, run_both(inputs, "silu")[0], rtol=0, atol=0)


def test_steps_one_at_a_time_equal_steps_together():
    inputs = make_inputs(2, 12, 4, 4, 3)
    together, state_together, _, _ = run_both(inputs, "silu")
    state = inputs["conv_state"].clone()
    outs = [causal_conv1d_update(inputs["x"][..., t], state, inputs["weight"], inputs["bias"], "silu")
            for t in range(4)]
    torch.testing.assert_close(torch.stack(outs, dim=-1), together, rtol=0, atol=1e-6)
    assert torch.equal(state, state_together)


def test_updates_one_layer_slice_of_the_served_cache():
    """Mamba-LOB serves conv_state as (B, n_layer, d_inner, d_conv - 1): each layer updates its strided slice."""
    inputs = make_inputs(3, 20, None, 4, 3)
    cache = torch.randn(3, 2, 20, 3, device=DEVICE)
    cache_before = cache.clone()
    state_ref = cache[:, 0].clone()
    out = causal_conv1d_update(inputs["x"], cache[:, 0], inputs["weight"], inputs["bias"], "silu")
    out_ref = causal_conv1d_update_ref(inputs["x"], state_ref, inputs["weight"], inputs["bias"], "silu")
    torch.testing.assert_close(out, out_ref, rtol=3e-4, atol=1e-3)
    assert torch.equal(cache[:, 0], state_ref)
    assert torch.equal(cache[:, 1], cache_before[:, 1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    inputs = make_inputs(2, 24, 2, 4, 3, dtype=dtype)
    out, state, out_ref, state_ref = run_both(inputs, "silu")
    assert out.dtype == dtype
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out, out_ref, rtol=rtol, atol=atol)
    assert torch.equal(state, state_ref)


@pytest.mark.parametrize(
    "change,activation,message",
    [
        (lambda a: a.update(conv_state=a["conv_state"][..., :2]), None,
         "conv_state holds 2 steps but a width-4 conv needs at least 3"),
        (lambda a: a.update(weight=a["weight"][:-1]), None, "weight must have shape (8, 4)"),
        (lambda a: None, "relu", "activation must be None, 'silu' or 'swish'"),
    ],
)
def test_bad_arguments_raise_clear_errors(change, activation, message):
    inputs = make_inputs(2, 8, None, 4, 3)
    change(inputs)
    with pytest.raises(ValueError) as err:
        causal_conv1d_update(**inputs, activation=activation)
    assert message in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-without-interpreter error")
def test_cpu_tensors_without_interpreter_are_refused_clearly():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import torch, lobkernels\n"
            "lobkernels.causal_conv1d_update(torch.zeros(1, 4), torch.zeros(1, 4, 3), torch.zeros(4, 4))\n")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "set TRITON_INTERPRET=1 before importing lobkernels" in run.stderr
