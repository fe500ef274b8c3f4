"""lobkernels.selective_scan_fn against selective_scan_ref (mamba_ssm's semantics): outputs, final states and the
gradient of every input, over odd shapes (dim not a multiple of the block, L = 1, 7, 129; dstate 1, 16)."""


import pytest
import torch

from lobkernels import selective_scan_fn, selective_scan_ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

pytestmark = pytest.mark.usefixtures("triton_interpreter")


# mamba_ssm's tolerances: rtol, atol per dtype
TOL = {torch.float32: (3e-4, 1e-3), torch.float16: (5e-3, 1e-2), torch.bfloat16: (1e-2, 5e-2)}
OPTIONAL = ("D", "z", "delta_bias", "initial_state")


def make_inputs(batch, dim, L, dstate, dtype=torch.float32, optional=OPTIONAL, seed=0):
    """Inputs as mamba_ssm's tests draw them: A negative, delta positive and small."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.rand(*shape, generator=g) * scale + shift).to(DEVICE, dt)

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, generator=g).to(DEVICE, dt)

    inputs = dict(u=randn(batch, dim, L), delta=rand(batch, dim, L, scale=0.5), A=rand(dim, dstate, scale=-0.5,
                  shift=-0.1, dt=torch.float32), B=randn(batch, dstate, L), C=randn(batch, dstate, L))
    extra = dict(D=randn(dim, dt=torch.float32), z=randn(batch, dim, L),
                 delta_bias=rand(dim, scale=0.5, dt=torch.float32), initial_state=randn(batch, dim, dstate))
    inputs.update({k: v for k, v in extra.items() if k in optional})
    return inputs


def leaf_copy(inputs):
    return {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}


def assert_close(actual, expected, dtype, what):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=True, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("batch,dim,L,dstate", [(1, 5, 1, 1), (3, 70, 7, 16), (1, 40, 129, 16), (2, 3, 7, 1)])
@pytest.mark.parametrize("optional,softplus", [((), False), (OPTIONAL, True), (("D",), False), (("z",), True)])
def test_forward_matches_reference(batch, dim, L, dstate, optional, softplus):
    inputs = make_inputs(batch, dim, L, dstate, optional=optional)
    with torch.no_grad():
        out, last = selective_scan_fn(**inputs, delta_softplus=softplus, return_last_state=True)
        out_ref, last_ref = selective_scan_ref(**inputs, delta_softplus=softplus, return_last_state=True)
    assert out.shape == (batch, dim, L) and last.shape == (batch, dim, dstate)
    assert last.dtype == torch.float32  # like mamba_ssm, whatever the input dtype
    assert_close(out, out_ref, torch.float32, "out")
    assert_close(last, last_ref, torch.float32, "last state")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_forward_half_precision(dtype):
    inputs = make_inputs(2, 20, 9, 16, dtype=dtype)
    with torch.no_grad():
        out, last = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True)
        out_ref, last_ref = selective_scan_ref(**inputs, delta_softplus=True, return_last_state=True)
    assert out.dtype == dtype
    assert_close(out, out_ref, dtype, "out")
    assert_close(last, last_ref, dtype, "last state")


def _grads(fn, inputs, softplus, seed=1):
    """Both outputs, and the gradients of a fixed random projection of them w.r.t. every input."""
    leaves = leaf_copy(inputs)
    out, last = fn(**leaves, delta_softplus=softplus, return_last_state=True)
    g = torch.Generator().manual_seed(seed)
    dout = torch.randn(out.shape, generator=g).to(DEVICE, out.dtype)
    dlast = torch.randn(last.shape, generator=g).to(DEVICE, last.dtype)
    torch.autograd.backward([out, last], [dout, dlast])
    return (out.detach(), last.detach()), {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize(
    "batch,dim,L,dstate,optional,softplus",
    [
        (3, 70, 7, 16, OPTIONAL, True),  # two channel blocks, the last one partial
        (3, 70, 7, 16, (), False),
        (2, 5, 1, 16, OPTIONAL, True),  # L = 1
        (1, 24, 129, 1, OPTIONAL, True),  # several chunks with a 1-step tail; dstate 1
        (2, 9, 7, 16, ("D", "delta_bias"), True),
        (2, 9, 7, 16, ("z", "initial_state"), False),
    ],
)
def test_gradients_match_reference(batch, dim, L, dstate, optional, softplus):
    inputs = make_inputs(batch, dim, L, dstate, optional=optional)
    (out, last), grads = _grads(selective_scan_fn, inputs, softplus)
    (out_ref, last_ref), grads_ref = _grads(selective_scan_ref, inputs, softplus)
    assert_close(out, out_ref, torch.float32, "out")
    assert_close(last, last_ref, torch.float32, "last state")  # taken from the saved checkpoints
    assert set(grads) == {"u", "delta", "A", "B", "C", *optional}
    for name, grad_ref in grads_ref.items():
        assert grads[name] is not None, f"no gradient for {name}"
        assert_close(grads[name], grad_ref, torch.float32, f"d{name}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gradients_half_precision(dtype):
    inputs = make_inputs(2, 12, 9, 16, dtype=dtype, optional=("D", "z", "delta_bias"))
    _, grads = _grads(selective_scan_fn, inputs, True)
    _, grads_ref = _grads(selective_scan_ref, inputs, True)
    for name, grad_ref in grads_ref.items():
        assert grads[name].dtype == inputs[name].dtype
        assert_close(grads[name], grad_ref, dtype, f"d{name}")


def test_noncontiguous_inputs():
    """The model passes transposed projections (batch, L, dim).transpose(1, 2): strides are honoured."""
    inputs = make_inputs(2, 20, 9, 16, optional=("D", "z", "delta_bias"))
    for name in ("u", "delta", "z", "B", "C"):
        inputs[name] = inputs[name].transpose(1, 2).contiguous().transpose(1, 2)
    assert not inputs["u"].is_contiguous()
    with torch.no_grad():
        out = selective_scan_fn(**inputs, delta_softplus=True)
        out_ref = selective_scan_ref(**inputs, delta_softplus=True)
    assert_close(out, out_ref, torch.float32, "out")


def test_scan_in_two_pieces_equals_one():
    """initial_state carries a long sequence across pieces: scanning [0, 20) then [20, 33) equals one scan."""
    inputs = make_inputs(2, 10, 33, 16, optional=("D", "z", "delta_bias"))
    with torch.no_grad():
        whole, last = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True)
        first = {k: (v[..., :20] if k in ("u", "delta", "B", "C", "z") else v) for k, v in inputs.items()}
        second = {k: (v[..., 20:] if k in ("u", "delta", "B", "C", "z") else v) for k, v in inputs.items()}
        out1, h = selective_scan_fn(**first, delta_softplus=True, return_last_state=True)
        out2, last2 = selective_scan_fn(**second, delta_softplus=True, return_last_state=True, initial_state=h)
    assert_close(torch.cat([out1, out2], dim=-1), whole, torch.float32, "out")
    assert_close(last2, last, torch.float32, "last state")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.update(B=a["B"][:, :, 0]), "B and C must be input-dependent"),
        (lambda a: a.update(delta=a["delta"][:, :-1]), "delta must have shape (2, 6, 5)"),
        (lambda a: a.update(D=a["u"].new_ones(7)), "D must have shape (6,)"),
        (lambda a: a.update(A=a["A"].to(torch.complex64)), "A must be real"),
        (lambda a: a.update(u=a["u"].to(torch.int32)), "u must be float32, float16 or bfloat16"),
    ],
)
def test_bad_arguments_raise_clear_errors(change, message):
    inputs = make_inputs(2, 6, 5, 4, optional=("D",))
    change(inputs)
    with pytest.raises(ValueError) as err:
        selective_scan_fn(**inputs)
    assert message in str(err.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: training shapes are too slow to interpret")
@pytest.mark.parametrize("L", [256, 2048])
def test_training_shapes_on_gpu(L):
    """Mamba-LOB's training shapes (base preset: dim 384, dstate 16), many chunks: outputs and every gradient."""
    inputs = make_inputs(4, 384, L, 16)
    (out, last), grads = _grads(selective_scan_fn, inputs, True)
    (out_ref, last_ref), grads_ref = _grads(selective_scan_ref, inputs, True)
    assert_close(out, out_ref, torch.float32, "out")
    assert_close(last, last_ref, torch.float32, "last state")
    for name, grad_ref in grads_ref.items():
        assert_close(grads[name], grad_ref, torch.float32, f"d{name}")
