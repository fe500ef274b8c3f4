"""Mamba-LOB gives the same outputs on its PyTorch path and on lobkernels' Triton kernels (the CUDA path),
run here on CPU through the Triton interpreter."""

import pytest
import torch

from lob.models.mamba import MambaLOB
from lob.models.registry import config_from_preset
from lob.models.ops import kernel_backend

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

pytestmark = pytest.mark.usefixtures("triton_interpreter")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MambaLOB(config_from_preset("mamba", "tiny", vocab_size=97, n_features=12)).to(DEVICE).eval()


def inputs(batch: int, length: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 97, (batch, length), generator=g).to(DEVICE),
            torch.randn(batch, length, 12, generator=g).to(DEVICE))


@pytest.mark.parametrize("length", [1, 7, 33])
def test_forward_kernels_match_torch(model, length):
    tokens, feats = inputs(2, length)
    with torch.no_grad():
        with kernel_backend("torch"):
            ref = model(tokens, feats)
        with kernel_backend("triton"):
            out = model(tokens, feats)
    for r, o in zip(ref, out):  # next logits, direction logits, conv state, ssm state
        torch.testing.assert_close(o, r, rtol=3e-4, atol=1e-3)


@pytest.mark.parametrize("length", [2, 7, 33])
def test_stepwise_scan_matches_the_parallel_scan_from_a_carried_state(model, length):
    """kernel_backend("stepwise"), the scan of the exported chunk graph (one state update per tick under torch's
    scan operator), gives the parallel scan's outputs and final states from a state carried in."""
    tokens, feats = inputs(2, length, seed=3)
    with torch.no_grad():
        _, _, conv, ssm = model(*inputs(2, 5, seed=4))
        assert ssm.abs().max() > 0.01  # the carried state is not the zero state
        with kernel_backend("torch"):
            ref = model(tokens, feats, conv, ssm)
        with kernel_backend("stepwise"):
            out = model(tokens, feats, conv, ssm)
    for r, o in zip(ref, out):  # next logits, direction logits, conv state, ssm state
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)


def test_step_kernels_match_torch_and_leave_inputs_alone(model):
    tokens, feats = inputs(3, 5, seed=2)
    conv, ssm = model.allocate_inference_cache(3)
    conv, ssm = conv.to(DEVICE), ssm.to(DEVICE)
    states = {"torch": (conv, ssm), "triton": (conv.clone(), ssm.clone())}
    with torch.no_grad():
        for t in range(tokens.shape[1]):
            outs = {}
            for name in ("torch", "triton"):
                before = [s.clone() for s in states[name]]
                with kernel_backend(name):
                    nl, dl, c, s = model.step(tokens[:, t], feats[:, t], *states[name])
                for b, s_in in zip(before, states[name]):  # functional: the caller's states are untouched
                    torch.testing.assert_close(s_in, b, rtol=0, atol=0)
                states[name] = (c, s)
                outs[name] = (nl, dl, c, s)
            for r, o in zip(outs["torch"], outs["triton"]):
                torch.testing.assert_close(o, r, rtol=3e-4, atol=1e-3)


def test_training_gradients_match_through_kernels(model):
    tokens, feats = inputs(2, 19, seed=3)
    grads = {}
    for name in ("torch", "triton"):
        model.zero_grad()
        with kernel_backend(name):
            next_logits, dir_logits, _, _ = model(tokens, feats)
        (next_logits.logsumexp(-1).mean() + dir_logits.square().mean()).backward()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["torch"].keys() == grads["triton"].keys()
    for n in grads["torch"]:
        torch.testing.assert_close(grads["triton"][n], grads["torch"][n], rtol=3e-4, atol=1e-3, msg=n)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="auto, torch, triton or stepwise"):
        with kernel_backend("cuda"):
            pass
