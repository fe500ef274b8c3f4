"""lobkernels.selective_state_update against selective_state_update_ref (mamba_ssm's semantics): the in-place state
update and the output, plain and multi-head forms, a serving slot pool addressed by state_batch_indices."""


import pytest
import torch

from lobkernels import selective_state_update, selective_state_update_ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

pytestmark = pytest.mark.usefixtures("triton_interpreter")


TOL = {torch.float32: (3e-4, 1e-3), torch.float16: (5e-3, 1e-2), torch.bfloat16: (1e-2, 5e-2)}
OPTIONAL = ("D", "z", "dt_bias")


def make_inputs(batch, dim, dstate, nheads=None, ngroups=1, pool=None, dtype=torch.float32,
                state_dtype=torch.float32, optional=OPTIONAL, seed=0):
    """Plain form when nheads is None, else multi-head; the state has `pool` rows (default: batch)."""
    g = torch.Generator().manual_seed(seed)
    heads = () if nheads is None else (nheads,)
    groups = () if nheads is None else (ngroups,)

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, generator=g).to(DEVICE, dt)

    inputs = dict(
        state=randn(pool or batch, *heads, dim, dstate, dt=state_dtype),
        x=randn(batch, *heads, dim),
        dt=randn(batch, *heads, dim) * 0.5,
        A=-torch.rand(*heads, dim, dstate, generator=g).to(DEVICE) - 0.1,
        B=randn(batch, *groups, dstate),
        C=randn(batch, *groups, dstate),
    )
    extra = dict(D=randn(*heads, dim, dt=torch.float32), z=randn(batch, *heads, dim),
                 dt_bias=randn(*heads, dim, dt=torch.float32) * 0.5)
    inputs.update({k: v for k, v in extra.items() if k in optional})
    return inputs


def run_both(inputs, **kwargs):
    """(out, state) from the kernel and from the reference, each on its own copy of the state."""
    state = inputs["state"].clone()
    state_ref = inputs["state"].clone()
    out = selective_state_update(**{**inputs, "state": state}, **kwargs)
    out_ref = selective_state_update_ref(**{**inputs, "state": state_ref}, **kwargs)
    return out, state, out_ref, state_ref


def assert_close(actual, expected, dtype, what):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("batch,dim,dstate", [(1, 5, 1), (3, 40, 16), (2, 33, 16)])
@pytest.mark.parametrize("optional,softplus", [((), False), (OPTIONAL, True)])
def test_plain_form_matches_reference(batch, dim, dstate, optional, softplus):
    inputs = make_inputs(batch, dim, dstate, optional=optional)
    before = inputs["state"].clone()
    out, state, out_ref, state_ref = run_both(inputs, dt_softplus=softplus)
    assert out.shape == (batch, dim) and out.dtype == inputs["x"].dtype
    assert not torch.equal(state, before)  # updated in place, on the tensor passed in
    assert_close(state, state_ref, torch.float32, "state")
    assert_close(out, out_ref, torch.float32, "out")


@pytest.mark.parametrize("nheads,ngroups", [(2, 1), (4, 2)])
def test_multihead_form_matches_reference(nheads, ngroups):
    inputs = make_inputs(3, 12, 16, nheads=nheads, ngroups=ngroups)
    out, state, out_ref, state_ref = run_both(inputs, dt_softplus=True)
    assert out.shape == (3, nheads, 12)
    assert_close(state, state_ref, torch.float32, "state")
    assert_close(out, out_ref, torch.float32, "out")


def test_mamba_lob_step_shapes_and_strided_inputs():
    """Mamba-LOB's decode step: x and z are halves of one in_proj output, and the state is one layer's slice of the
    served cache (B, n_layer, d_inner, d_state): strided views, the slice updated in place, the other layer not."""
    inputs = make_inputs(3, 48, 16)
    xz = torch.randn(3, 2 * 48, device=DEVICE)
    inputs["x"], inputs["z"] = xz.chunk(2, dim=-1)
    assert inputs["x"].stride() == (96, 1)
    cache = torch.randn(3, 2, 48, 16, device=DEVICE)  # (B, n_layer, d_inner, d_state)
    cache_before = cache.clone()
    state_ref = cache[:, 1].clone()
    out = selective_state_update(**{**inputs, "state": cache[:, 1]}, dt_softplus=True)
    out_ref = selective_state_update_ref(**{**inputs, "state": state_ref}, dt_softplus=True)
    assert_close(cache[:, 1], state_ref, torch.float32, "state")
    assert_close(out, out_ref, torch.float32, "out")
    assert torch.equal(cache[:, 0], cache_before[:, 0])


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("nheads", [None, 2])
def test_state_batch_indices_update_only_named_rows(index_dtype, nheads):
    inputs = make_inputs(3, 20, 16, nheads=nheads, pool=7)
    indices = torch.tensor([5, 0, 3], dtype=index_dtype, device=DEVICE)
    before = inputs["state"].clone()
    out, state, out_ref, state_ref = run_both(inputs, dt_softplus=True, state_batch_indices=indices)
    untouched = [1, 2, 4, 6]
    assert torch.equal(state[untouched], before[untouched])  # bit-identical
    assert_close(state, state_ref, torch.float32, "state")
    assert_close(out, out_ref, torch.float32, "out")
    # Row i of the batch reads pool row indices[i]: the same request against a batch-sized state agrees.
    gathered = {**inputs, "state": before[indices.long()].clone()}
    out_direct = selective_state_update(**gathered, dt_softplus=True)
    torch.testing.assert_close(out, out_direct, rtol=0, atol=0)
    torch.testing.assert_close(state[indices.long()], gathered["state"], rtol=0, atol=0)


def test_padding_index_touches_no_row_and_outputs_zero():
    inputs = make_inputs(3, 20, 16, pool=4)
    indices = torch.tensor([2, -1, 9], device=DEVICE)  # -1 and 9 (outside the pool of 4) are padding
    before = inputs["state"].clone()
    out, state, out_ref, state_ref = run_both(inputs, state_batch_indices=indices)
    assert torch.equal(state[[0, 1, 3]], before[[0, 1, 3]])
    assert not torch.equal(state[2], before[2])
    assert torch.equal(out[1:], torch.zeros_like(out[1:]))
    assert_close(out, out_ref, torch.float32, "out")
    assert_close(state, state_ref, torch.float32, "state")


@pytest.mark.parametrize("dtype,state_dtype", [(torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
                                               (torch.bfloat16, torch.float32)])
def test_half_precision(dtype, state_dtype):
    inputs = make_inputs(2, 24, 16, dtype=dtype, state_dtype=state_dtype)
    out, state, out_ref, state_ref = run_both(inputs, dt_softplus=True)
    assert out.dtype == dtype and state.dtype == state_dtype
    assert_close(state, state_ref, dtype, "state")
    assert_close(out, out_ref, dtype, "out")


@pytest.mark.parametrize(
    "change,kwargs,message",
    [
        (lambda a: a.update(x=a["x"][:, :-1]), {}, "x must have shape (2, 8)"),
        (lambda a: a.update(B=a["B"][:, :3]), {}, "B must have shape (2, 4)"),
        (lambda a: a.update(state=a["state"][:1]), {}, "state has 1 rows but x has batch 2"),
        (lambda a: None, {"state_batch_indices": torch.tensor([0.0, 1.0])}, "state_batch_indices must be int32"),
        (lambda a: None, {"state_batch_indices": torch.tensor([0, 1, 2])}, "state_batch_indices must have shape"),
    ],
)
def test_bad_arguments_raise_clear_errors(change, kwargs, message):
    inputs = make_inputs(2, 8, 4)
    change(inputs)
    kwargs = {k: v.to(DEVICE) for k, v in kwargs.items()}
    with pytest.raises(ValueError) as err:
        selective_state_update(**inputs, **kwargs)
    assert message in str(err.value)


def test_heads_not_multiple_of_groups_is_rejected():
    inputs = make_inputs(2, 8, 4, nheads=3, ngroups=2)
    with pytest.raises(ValueError, match=r"nheads \(3\) must be a multiple of ngroups"):
        selective_state_update(**inputs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: serving shapes are too slow to interpret")
def test_serving_shapes_on_gpu():
    """Batch 1024 of a 4096-slot pool at d_inner 512: named rows match the reference, the others stay bit-identical."""
    inputs = make_inputs(1024, 512, 16, pool=4096)
    indices = torch.randperm(4096, device=DEVICE)[:1024]
    before = inputs["state"].clone()
    out, state, out_ref, state_ref = run_both(inputs, dt_softplus=True, state_batch_indices=indices)
    assert_close(state, state_ref, torch.float32, "state")
    assert_close(out, out_ref, torch.float32, "out")
    untouched = torch.ones(4096, dtype=torch.bool, device=DEVICE)
    untouched[indices] = False
    assert torch.equal(state[untouched], before[untouched])
