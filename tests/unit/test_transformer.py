"""TransformerLOB and HybridLOB: forward over a window == step over the same ticks (full KV cache and ring),
the ring beyond W == sliding-window forward, chunked forward with state == one forward, RoPE at 1e6."""
import pytest
import torch

from lob.models.registry import config_from_preset, build, arch

VOCAB, N_FEATURES = 1000, 12
ARCHS = ("transformer", "hybrid")


def _model(name: str, **overrides):
    torch.manual_seed(0)
    model = arch(name).model(config_from_preset(name, "tiny", VOCAB, N_FEATURES, **overrides)).eval()
    with torch.no_grad():  # untrained attention is near-uniform; sharpen it so positions and windows matter
        for layer in model.layers:
            if hasattr(layer, "attn"):
                layer.attn.qkv_proj.weight *= 8.0
    return model


def _inputs(batch: int, length: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g), torch.randn(batch, length, N_FEATURES, generator=g)


@torch.no_grad()
def _steps(model, tokens, features, cache: str, state=None):
    state = model.allocate_inference_cache(tokens.shape[0], cache=cache) if state is None else state
    nexts, dirs = [], []
    for t in range(tokens.shape[1]):
        n, d, *state = model.step(tokens[:, t], features[:, t], *state, cache=cache)
        nexts.append(n)
        dirs.append(d)
    return torch.stack(nexts, 1), torch.stack(dirs, 1), state


def _close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("cache", ["full", "ring"])
def test_step_equals_forward_within_the_window(name, cache):
    model = _model(name, window=48)
    tokens, features = _inputs(3, 48)
    with torch.no_grad():
        next_ref, dir_ref, *_ = model(tokens, features)
    next_s, dir_s, state = _steps(model, tokens, features, cache)
    _close(next_s, next_ref)
    _close(dir_s, dir_ref)
    assert int(state[-1][0, 0]) == 48  # POS counts the ticks
    if cache == "full":
        assert state[-3].shape[-2] == 48  # K grew by one tick per step


@pytest.mark.parametrize("name", ARCHS)
def test_ring_beyond_the_window_equals_sliding_window_forward(name):
    model = _model(name, window=16)
    tokens, features = _inputs(2, 70)
    with torch.no_grad():
        next_ref, dir_ref, *state_ref = model(tokens, features)
    next_s, dir_s, state = _steps(model, tokens, features, "ring")
    _close(next_s, next_ref)
    _close(dir_s, dir_ref)
    for got, want in zip(state, state_ref):  # the ring forward leaves is the one the steps leave
        _close(got, want) if got.is_floating_point() else torch.testing.assert_close(got, want)
    # the window is real: the unbounded full cache sees older ticks and differs past W, not before
    next_full, _, _ = _steps(model, tokens, features, "full")
    _close(next_full[:, :16], next_ref[:, :16])
    assert (next_full[:, 20:] - next_ref[:, 20:]).abs().max() > 1e-2


@pytest.mark.parametrize("name", ARCHS)
def test_chunked_forward_with_state_equals_one_forward(name):
    """What predict/evaluate do over a long day: chunks of any size, the ring state carried between them."""
    model = _model(name, window=16)
    tokens, features = _inputs(2, 90, seed=3)
    with torch.no_grad():
        next_ref, dir_ref, *state_ref = model(tokens, features)
        state = model.allocate_inference_cache(2)
        nexts, dirs = [], []
        for a, b in ((0, 5), (5, 29), (29, 30), (30, 90)):
            n, d, *state = model(tokens[:, a:b], features[:, a:b], *state)
            nexts.append(n)
            dirs.append(d)
    _close(torch.cat(nexts, 1), next_ref)
    _close(torch.cat(dirs, 1), dir_ref)
    for got, want in zip(state, state_ref):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ARCHS)
def test_a_batch_of_sequences_at_different_positions_steps_as_each_alone(name):
    """Triton batches sequences that are at different ticks; each row's ring and position are its own."""
    model = _model(name, window=8)
    tokens, features = _inputs(2, 30, seed=5)
    with torch.no_grad():
        _, _, *s0 = model(tokens[:1, :3], features[:1, :3])  # row 0 at position 3
        _, _, *s1 = model(tokens[1:, :20], features[1:, :20])  # row 1 at position 20 (ring wrapped)
        state = [torch.cat([a, b]) for a, b in zip(s0, s1)]
        n, d, *after = model.step(tokens[:, 25], features[:, 25], *state)
        n0, d0, *_ = model.step(tokens[:1, 25], features[:1, 25], *s0)
        n1, d1, *_ = model.step(tokens[1:, 25], features[1:, 25], *s1)
    _close(n, torch.cat([n0, n1]))
    _close(d, torch.cat([d0, d1]))
    assert after[-1].tolist() == [[4], [21]]


@pytest.mark.parametrize("name", ARCHS)
def test_step_does_not_modify_its_input_state(name):
    model = _model(name)
    state = [s + 0.5 if s.is_floating_point() else s + 3 for s in model.allocate_inference_cache(2)]
    before = [s.clone() for s in state]
    tokens, features = _inputs(2, 1)
    with torch.no_grad():
        model.step(tokens[:, 0], features[:, 0], *state)
    for a, b in zip(state, before):
        assert torch.equal(a, b)


def test_rope_is_relative_at_a_million_ticks():
    """Scores depend on the offset only, to float32 rounding, even at position 1e6 (angles in float64)."""
    from lob.models.transformer import Rotary, rope

    rot = Rotary(16, 10_000.0, window=8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)

    def score(pq, pk):
        cq, sq = rot(torch.tensor([pq]))
        ck, sk = rot(torch.tensor([pk]))
        return (rope(q, cq[0], sq[0]) * rope(k, ck[0], sk[0])).sum()

    near = torch.stack([score(d, 0) for d in (1, 7, 100)])
    far = torch.stack([score(1_000_000 + d, 1_000_000) for d in (1, 7, 100)])
    _close(far, near, atol=1e-5)
    assert (near - near[0]).abs().max() > 1e-2  # the offsets give different scores: the check is not vacuous


@pytest.mark.parametrize("name", ARCHS)
def test_the_ring_step_is_the_same_at_a_million_ticks(name):
    """The served step depends on the last W ticks and their offsets, not on how far into the day they are:
    the same ring at POS = 40 and at POS = 40 + 62,500 W (1,000,040) steps alike to float32 rounding (its
    keys are kept before RoPE, rotated by offsets < W). A POS one tick off is not the same ring, and shows."""
    model = _model(name, window=16)
    tokens, features = _inputs(2, 60, seed=7)
    with torch.no_grad():
        _, _, *state = model(tokens[:, :40], features[:, :40])  # POS 40, ring wrapped twice
        *ring, pos = state
        outs = {}
        for shift in (0, 62_500 * 16, 1):
            s = [*ring, pos + shift]
            steps = []
            for t in range(40, 60):
                n, d, *s = model.step(tokens[:, t], features[:, t], *s)
                steps.append(torch.cat([n.softmax(-1).flatten(1), d.softmax(-1).flatten(1)], 1))
            outs[shift] = torch.stack(steps, 1)
    _close(outs[62_500 * 16], outs[0], atol=1e-6)
    assert (outs[1] - outs[0]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["mamba", *ARCHS])
def test_config_round_trips_through_the_checkpoint(name, tmp_path):
    from lob.models.registry import checkpoint, from_checkpoint

    model = _model(name) if name != "mamba" else build("mamba", config_from_preset("mamba", "tiny", VOCAB,
                                                                                   N_FEATURES).to_dict())
    torch.save(checkpoint(model), tmp_path / "c.pt")
    again = from_checkpoint(torch.load(tmp_path / "c.pt", weights_only=True))
    assert type(again) is type(model) and again.config == model.config
    tokens, features = _inputs(1, 5)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(tokens, features)[0], model(tokens, features)[0], atol=0, rtol=0)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown architecture 'rnn'"):
        arch("rnn")
    with pytest.raises(ValueError, match="n_head=4 must be a multiple of n_kv_head=3"):
        config_from_preset("transformer", "tiny", VOCAB, N_FEATURES, n_kv_head=3)
    with pytest.raises(ValueError, match="leaves no attention layer"):
        config_from_preset("hybrid", "tiny", VOCAB, N_FEATURES, attn_every=3)
    with pytest.raises(ValueError, match="unknown field"):
        arch("transformer").config.from_dict({**config_from_preset("transformer", "tiny", VOCAB, 12).to_dict(),
                                              "d_state": 16})


def test_hybrid_layer_pattern():
    from lob.models.transformer import TransformerBlock

    def pattern(model):
        return "".join("A" if isinstance(layer, TransformerBlock) else "M" for layer in model.layers)

    cfg = config_from_preset("hybrid", "base", VOCAB, N_FEATURES, attn_every=3)
    model = arch("hybrid").model(cfg)
    assert pattern(model) == "MMAMMA"
    conv, ssm, k, v, pos = model.allocate_inference_cache(2)
    assert conv.shape[1] == 4 and k.shape[1] == 2 and k.shape[3] == cfg.window == 128
    # the presets keep one attention layer, last (README: k measured)
    assert [pattern(arch("hybrid").model(config_from_preset("hybrid", p, VOCAB, N_FEATURES)))
            for p in ("tiny", "small", "base")] == ["MA", "MMA", "MMMMMA"]


def test_lob_train_refuses_an_unknown_arch(tmp_path):
    from typer.testing import CliRunner

    from lob.cli import app

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--arch", "rnn"])
    assert result.exit_code == 2
    assert "unknown architecture 'rnn'" in result.output
    assert not (tmp_path / "run").exists()


def test_lob_train_model_options_set_the_config_and_are_recorded(tmp_path):
    """`--model-opt window=24 --model-opt n_layer=3` replaces the preset's fields: the checkpoint's model has
    them, config.json records them for --resume and walk-forward; a field the arch lacks is refused up front."""
    import json

    from typer.testing import CliRunner

    from lob.cli import app
    from lob.data.simulator import simulate_dataset
    from lob.training.run import load_run

    simulate_dataset(tmp_path / "data", n_symbols=1, n_days=1, seed=1, events_per_day=2000, start_date="2024-01-02")
    runner = CliRunner()
    refused = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "bad"),
                                  "--arch", "transformer", "--model-opt", "d_state=8"])
    assert refused.exit_code == 2 and "['d_state']" in refused.output and "window" in refused.output
    assert not (tmp_path / "bad").exists()
    malformed = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "bad"),
                                    "--model-opt", "window"])
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output

    from lob.training.config import TrainConfig
    from lob.training.train import train

    cfg = TrainConfig(arch="hybrid", max_steps=2, window=64, batch_size=2, eval_every=1, max_val_windows=2,
                      model_options={"window": 24, "n_layer": 3, "attn_every": 3}, dir_init="zero")
    run = train(tmp_path / "data", tmp_path / "run", cfg)
    model, _, _ = load_run(run)
    assert (model.config.window, model.config.n_layer, model.config.attn_every) == (24, 3, 3)
    assert model.allocate_inference_cache(1)[2].shape[-2] == 24  # K ring of 24 slots
    recorded = json.loads((run / "config.json").read_text())["training"]["model_options"]
    assert recorded == {"window": 24, "n_layer": 3, "attn_every": 3}


def test_model_opt_values_parse_as_int_float_or_text():
    from lob.cli import _model_options

    assert _model_options(["window=128", "rope_theta=5e4", "d_ff=auto"]) == {"window": 128, "rope_theta": 50000.0,
                                                                           "d_ff": "auto"}
