"""MambaLOB: the step recurrence, chunked and whole-sequence forward agree; the parallel scan is the loop."""
import pytest
import torch

from lob.models.mamba import PRESETS, MambaLOB, MambaLOBConfig
from lob.models.registry import config_from_preset, count_parameters
from lob.models.ops import selective_scan_torch
from lobkernels.reference import selective_scan_ref

VOCAB, N_FEATURES = 1000, 12


@pytest.fixture(scope="module")
def model() -> MambaLOB:
    torch.manual_seed(0)
    return MambaLOB(config_from_preset("mamba", "tiny", VOCAB, N_FEATURES)).eval()


def _inputs(batch: int, length: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g), torch.randn(batch, length, N_FEATURES, generator=g)


@pytest.mark.parametrize("batch,length", [(3, 1), (3, 2), (2, 37), (5, 64)])
def test_step_by_step_equals_forward(model, batch, length):
    tokens, features = _inputs(batch, length)
    with torch.no_grad():
        next_logits, dir_logits, conv, ssm = model(tokens, features)
        conv_s, ssm_s = model.allocate_inference_cache(batch)
        for t in range(length):
            nl, dl, conv_s, ssm_s = model.step(tokens[:, t], features[:, t], conv_s, ssm_s)
            torch.testing.assert_close(nl, next_logits[:, t], atol=1e-5, rtol=0)
            torch.testing.assert_close(dl, dir_logits[:, t], atol=1e-5, rtol=0)
    assert nl.shape == (batch, VOCAB) and dl.shape == (batch, 3, 3)
    torch.testing.assert_close(conv_s, conv, atol=1e-5, rtol=0)
    torch.testing.assert_close(ssm_s, ssm, atol=1e-5, rtol=0)


def test_step_does_not_modify_its_input_states(model):
    tokens, features = _inputs(2, 5)
    with torch.no_grad():
        _, _, conv, ssm = model(tokens, features)  # non-zero states
        conv_copy, ssm_copy = conv.clone(), ssm.clone()
        _, _, conv_new, ssm_new = model.step(tokens[:, 0], features[:, 0], conv, ssm)
    assert torch.equal(conv, conv_copy) and torch.equal(ssm, ssm_copy)
    assert not torch.equal(ssm_new, ssm)


def test_forward_in_chunks_with_carried_state_equals_one_forward(model):
    tokens, features = _inputs(3, 101)
    with torch.no_grad():
        next_logits, dir_logits, conv, ssm = model(tokens, features)
        conv_c = ssm_c = None
        parts_next, parts_dir = [], []
        for lo, hi in [(0, 2), (2, 40), (40, 41), (41, 101)]:  # includes chunks shorter than d_conv - 1
            nl, dl, conv_c, ssm_c = model(tokens[:, lo:hi], features[:, lo:hi], conv_c, ssm_c)
            parts_next.append(nl)
            parts_dir.append(dl)
    torch.testing.assert_close(torch.cat(parts_next, 1), next_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(parts_dir, 1), dir_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(conv_c, conv, atol=1e-5, rtol=0)
    torch.testing.assert_close(ssm_c, ssm, atol=1e-5, rtol=0)


def test_outputs_are_causal(model):
    tokens, features = _inputs(2, 50)
    t = 23
    tokens2, features2 = tokens.clone(), features.clone()
    tokens2[:, t] = (tokens[:, t] + 1) % VOCAB
    features2[:, t] += 3.0
    with torch.no_grad():
        a_next, a_dir, _, _ = model(tokens, features)
        b_next, b_dir, _, _ = model(tokens2, features2)
    assert torch.equal(a_next[:, :t], b_next[:, :t]) and torch.equal(a_dir[:, :t], b_dir[:, :t])
    assert (a_next[:, t] - b_next[:, t]).abs().max() > 1e-3  # tick t itself does see the change


@pytest.mark.parametrize("shape", [(2, 3, 4, 1), (2, 3, 4, 2), (1, 5, 3, 37), (3, 2, 5, 64)])
@pytest.mark.parametrize("with_state", [False, True])
def test_parallel_scan_equals_reference_loop(shape, with_state):
    batch, dim, n, length = shape
    g = torch.Generator().manual_seed(sum(shape))
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    inputs = dict(u=rand(batch, dim, length), delta=rand(batch, dim, length), A=-torch.rand(dim, n, generator=g,
                  dtype=torch.float64) * 4, B=rand(batch, n, length), C=rand(batch, n, length), D=rand(dim),
                  z=rand(batch, dim, length), delta_bias=rand(dim))
    if with_state:
        inputs["initial_state"] = rand(batch, dim, n)
    for x in inputs.values():
        x.requires_grad_(True)
    weights = rand(batch, dim, length), rand(batch, dim, n)  # a loss that reaches y and the last state

    def run(scan):
        y, last = scan(**inputs, delta_softplus=True, return_last_state=True)
        grads = torch.autograd.grad((y * weights[0]).sum() + (last * weights[1]).sum(), list(inputs.values()))
        return y, last, grads

    y, last, grads = run(selective_scan_torch)
    y_ref, last_ref, grads_ref = run(selective_scan_ref)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(last, last_ref, atol=1e-10, rtol=1e-10)
    for name, gr, gr_ref in zip(inputs, grads, grads_ref):
        torch.testing.assert_close(gr, gr_ref, atol=1e-10, rtol=1e-10, msg=f"gradient of {name}")


def test_parallel_scan_is_stable_with_strong_decay():
    # exp(dt * A) underflows to 0 over a long sequence: nothing may overflow or become NaN
    batch, dim, n, length = 2, 3, 16, 500
    u, delta = torch.randn(batch, dim, length), torch.full((batch, dim, length), 5.0)
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(dim, 1)
    B, C = torch.randn(batch, n, length), torch.randn(batch, n, length)
    y = selective_scan_torch(u, delta, A, B, C, delta_softplus=True)
    torch.testing.assert_close(y, selective_scan_ref(u, delta, A, B, C, delta_softplus=True), atol=1e-5, rtol=1e-5)


def test_preset_sizes():
    counts = {name: count_parameters(MambaLOB(config_from_preset("mamba", name, VOCAB, N_FEATURES))) for name in PRESETS}
    assert 30_000 <= counts["tiny"] <= 100_000
    assert 250_000 <= counts["small"] <= 350_000
    assert 1_000_000 <= counts["base"] <= 3_000_000


def test_config_round_trips_and_rejects_bad_values():
    cfg = config_from_preset("mamba", "small", VOCAB, N_FEATURES)
    assert cfg.dt_rank == 6  # ceil(96 / 16)
    again = MambaLOBConfig.from_dict(cfg.to_dict())
    assert again == cfg
    model_a, model_b = MambaLOB(cfg), MambaLOB(again)
    model_b.load_state_dict(model_a.state_dict())  # same architecture, same parameter names and shapes
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        config_from_preset("mamba", "huge", VOCAB, N_FEATURES)
    with pytest.raises(ValueError, match="d_conv"):
        MambaLOBConfig(VOCAB, N_FEATURES, d_model=32, n_layer=1, d_conv=1)
    with pytest.raises(ValueError, match="unknown field"):
        MambaLOBConfig.from_dict({**cfg.to_dict(), "n_heads": 4})


def test_forward_rejects_bad_inputs(model):
    tokens, features = _inputs(2, 8)
    with pytest.raises(ValueError, match="features must be"):
        model(tokens, features[..., :5])
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 1000\)"):
        model(tokens + VOCAB, features)


def test_block_initialisation_follows_mamba():
    torch.manual_seed(0)
    mixer = MambaLOB(config_from_preset("mamba", "small", VOCAB, N_FEATURES)).layers[0].mixer
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)  # the initial step sizes
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    A = -torch.exp(mixer.A_log)
    torch.testing.assert_close(A[0], -torch.arange(1.0, 17.0))  # S4D-real


@pytest.mark.parametrize("arch", ["mamba", "transformer", "hybrid"])
def test_feature_skip_adds_a_linear_map_of_the_tick_features_to_the_direction_logits(arch):
    """The recipe's head: direction logits = sequence head + W · features of the same tick, W zero at init
    (so the skip starts as the plain model), in forward and in step alike; next-event logits untouched."""
    from lob.models.registry import arch as arch_of

    torch.manual_seed(0)
    plain_cfg = config_from_preset(arch, "tiny", vocab_size=20, n_features=5)
    skip_cfg = config_from_preset(arch, "tiny", vocab_size=20, n_features=5, feature_skip=1)
    plain, skip = arch_of(arch).model(plain_cfg), arch_of(arch).model(skip_cfg)
    skip.load_state_dict({**plain.state_dict(), "dir_skip.weight": skip.dir_skip.weight}, strict=True)
    tokens, feats = torch.randint(0, 20, (2, 9)), torch.randn(2, 9, 5)
    with torch.no_grad():
        assert torch.equal(skip(tokens, feats)[1], plain(tokens, feats)[1])  # zero at initialisation
        skip.dir_skip.weight.normal_()
        w = skip.dir_skip.weight  # (H*3, F)
        nxt_p, dir_p = plain(tokens, feats)[:2]
        nxt_s, dir_s = skip(tokens, feats)[:2]
        torch.testing.assert_close(dir_s, dir_p + (feats @ w.T).unflatten(-1, dir_p.shape[-2:]))
        assert torch.equal(nxt_s, nxt_p)
        state = skip.allocate_inference_cache(2)
        stepped = skip.step(tokens[:, 0], feats[:, 0], *state)[1]
        torch.testing.assert_close(stepped, dir_s[:, 0], atol=1e-5, rtol=1e-5)
