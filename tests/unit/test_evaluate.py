import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lob.data.schema import load_dataset, write_ticks
from lob.data.simulator import simulate_dataset
from lob.evaluation.baselines import DirectionBaselines
from lob.training.markov import TokenBaselines
from lob.evaluation.evaluate import evaluate
from lob.evaluation.metrics import accuracy, brier, confusion, direction_scores, ece, macro_f1
from lob.training.labels import IGNORE
from lob.training.run import RunError
from lob.training.config import TrainConfig
from lob.training.train import train


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate")
    simulate_dataset(root / "data", n_symbols=2, n_days=1, seed=11, events_per_day=2500, start_date="2024-01-02")
    run = train(root / "data", root / "run", TrainConfig(max_steps=3, window=64, batch_size=4, eval_every=3,
                                                         max_val_windows=4))
    return root / "data", run


@pytest.fixture(scope="module")
def evaluated(data_and_run) -> dict:
    """The plain evaluation of the run (test split, DeepLOB with 2 steps), once: what `evaluate` returned."""
    data, run = data_and_run
    return evaluate(run, data, n_boot=100, quiet=True, deeplob_steps=2)


def test_writes_every_metric_and_the_report(data_and_run, evaluated):
    _, run = data_and_run
    m = json.loads((run / "metrics.json").read_text())
    assert m == evaluated
    ne = m["next_event"]
    assert 0 <= ne["top1"] <= ne["top5"] <= 1 and ne["perplexity"] >= 1
    assert set(ne["baselines"]) == {"majority", "copy_prev", "markov1"}
    assert all(0 <= b["top1"] <= 1 for b in ne["baselines"].values())
    assert set(m["direction"]) == {"h10", "h50", "h100"} == set(m["backtest"])
    scores = {"accuracy", "macro_f1", "log_loss", "brier", "ece"}
    for h, d in m["direction"].items():
        assert scores <= set(d) and 0 <= d["accuracy"] <= 1 and 0 <= d["macro_f1"] <= 1 and d["log_loss"] > 0
        assert 0 <= d["brier"] <= 2 and 0 <= d["ece"] <= 1
        assert set(d["baselines"]) == {"majority", "logreg", "hgb", "deeplob"}
        assert set(m["backtest"][h]) == {"model", "logreg", "hgb", "deeplob"}
        for b in d["baselines"].values():
            assert scores <= set(b)
        for key, better in (("macro_f1", max), ("log_loss", min)):
            # ~700 test ticks are fewer than 5 bootstrap blocks (>= 500 ticks each): no interval, no edge claimed
            assert d["block"] >= 500 and d["ci95"][key] is None and d["significant"][key] == 0
            assert d["baselines"][d["best_baseline"][key]][key] == better(b[key] for b in d["baselines"].values())
        # every test tick with a full horizon ahead in its session is scored; the confusion matrix counts them
        assert np.asarray(d["confusion"]).sum() == d["n"] == sum(d["label_counts"].values())
        for name, r in m["backtest"][h].items():
            assert r["trades"] == sum(v["trades"] for v in r["per_day"].values())
            assert r["total_pnl_bps"] == pytest.approx(sum(v["total_pnl_bps"] for v in r["per_day"].values()))
    h = {"h10": 10, "h50": 50, "h100": 100}
    test_ticks = sum(s["n_test"] for s in json.loads((run / "manifest.json").read_text())["split"]["symbols"].values())
    assert m["test_ticks"] == test_ticks
    assert all(d["n"] == test_ticks - 2 * h[k] for k, d in m["direction"].items())  # 2 symbols, last h masked each
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # DeepLOB's budget as asked, and what it ran: 2 steps, then early stopping's one validation measurement
    assert m["deeplob"]["steps"] == 2 == m["deeplob"]["steps_run"] == m["deeplob"]["best_step"]
    assert m["deeplob"]["val_loss"] > 0 and "normalisation" in m["deeplob"]


def test_validation_and_cross_name_scoring(data_and_run, evaluated, tmp_path):
    """--on val scores the validation split into its own file; --score-data scores other names with the model
    and the baselines fitted on the run's data (scoring the run's own data that way is the plain evaluation)."""
    data, run = data_and_run
    test = evaluated
    assert (run / "deeplob.pt").exists()
    split = json.loads((run / "manifest.json").read_text())["split"]["symbols"]
    val = evaluate(run, data, n_boot=100, quiet=True, deeplob_steps=2, part="val")
    assert json.loads((run / "metrics.val.json").read_text()) == val and val["part"] == "val"
    assert val["test_ticks"] == sum(s["n_val"] for s in split.values()) != test["test_ticks"]
    assert val["direction"]["h10"]["log_loss"] != test["direction"]["h10"]["log_loss"]
    assert json.loads((run / "metrics.json").read_text()) == test  # the test scores are left as they were

    one = sorted(split)[0]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / one).symlink_to(data / one, target_is_directory=True)
    cross = evaluate(run, data, n_boot=100, quiet=True, deeplob_steps=2, score_data=tmp_path / "one")
    assert cross["scored"] == [one] and (run / f"metrics.on-{one}.json").exists()
    assert cross["test_ticks"] == split[one]["n_test"]
    both = evaluate(run, data, n_boot=100, quiet=True, deeplob_steps=2, score_data=data)
    for h, d in test["direction"].items():  # same fits, same ticks: the same scores, DeepLOB's included
        assert both["direction"][h]["log_loss"] == pytest.approx(d["log_loss"], abs=1e-12)
        for name, b in d["baselines"].items():
            assert both["direction"][h]["baselines"][name]["log_loss"] == pytest.approx(b["log_loss"], abs=1e-12)


def test_refuses_data_other_than_the_training_data(data_and_run, tmp_path):
    data, run = data_and_run
    for sym, t in load_dataset(data).items():
        t.bid_sz[-1, 0] += 1.0
        write_ticks(tmp_path / sym / "2024-01-02.parquet", t)
    with pytest.raises(RunError, match="sha256"):
        evaluate(run, tmp_path)


def test_metrics_on_hand_counted_predictions():
    truth = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])
    assert confusion(truth, pred).tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert accuracy(truth, pred) == pytest.approx(4 / 6)
    # per-class F1: down 2/3, flat 4/6, up 2/3
    assert macro_f1(truth, pred) == pytest.approx(2 / 3)
    # a class absent from both truth and prediction does not count
    assert macro_f1(np.array([1, 1, 2]), np.array([1, 1, 2])) == pytest.approx(1.0)


def test_probability_scores_on_hand_computed_predictions():
    truth = np.array([0, 1, 2, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.5, 0.25, 0.25], [0.1, 0.9, 0.0]])
    s = direction_scores(truth, proba)
    assert s["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.25, 0.9])))
    # Brier: (0.04 + 0.01 + 0.01) + (0.04 + 0.16 + 0.04) + (0.25 + 0.0625 + 0.5625) + (0.01 + 0.01 + 0) over 4
    assert brier(truth, proba) == pytest.approx((0.06 + 0.24 + 0.875 + 0.02) / 4)
    # top-label confidences 0.8, 0.6, 0.5, 0.9 in 10 bins -> bins 8, 6, 5, 9, each one tick:
    # hits 1, 1, 0, 1 -> ECE = (0.2 + 0.4 + 0.5 + 0.1) / 4
    assert ece(truth, proba, n_bins=10) == pytest.approx((0.2 + 0.4 + 0.5 + 0.1) / 4)
    assert s["accuracy"] == pytest.approx(0.75)
    # a perfectly confident, perfectly right forecaster scores 0 everywhere
    perfect = np.eye(3)[truth]
    assert brier(truth, perfect) == 0 and ece(truth, perfect) == 0


def test_token_baselines():
    train = [np.array([0, 1, 2] * 20), np.array([2, 2, 2, 1])]
    b = TokenBaselines.fit(train, vocab_size=4)
    pred = b.predict(np.array([0, 1, 2, 3]))
    assert b.majority == 2
    assert pred["majority"].tolist() == [2, 2, 2, 2]
    assert pred["copy_prev"].tolist() == [0, 1, 2, 3]
    # 0 -> 1 -> 2 -> 0 in train; token 3 was never seen: majority
    assert pred["markov1"].tolist() == [1, 2, 0, 2]


def _torch_lbfgs_logreg(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """The previous implementation (before scikit-learn): mean CE + l2 ||W||², full-batch torch L-BFGS;
    returns probabilities (N, 3). Kept here as the reference the scikit-learn baseline must agree with."""
    xt, yt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y)
    w = torch.zeros(x.shape[1], 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(xt @ w + b, -1).detach().numpy()


def test_logreg_baseline_learns_a_linear_rule_and_agrees_with_the_torch_fit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 4)).astype(np.float32)
    noisy = x[:, 0] + 0.5 * rng.standard_normal(3000)
    y = np.where(noisy > 0.5, 2, np.where(noisy < -0.5, 0, 1))
    labels = np.stack([y, np.full_like(y, 1)], axis=1)
    labels[-5:, 0] = IGNORE
    b = DirectionBaselines.fit(x, labels, l2=1e-3)
    proba = b.predict_proba(x)
    assert set(proba) == {"majority", "logreg", "hgb"} and proba["logreg"].shape == (3000, 2, 3)
    assert accuracy(y, proba["logreg"][:, 0].argmax(1)) > 0.65  # majority: ~0.35
    assert accuracy(y, proba["hgb"][:, 0].argmax(1)) > 0.65
    # the prior baseline: train frequencies (ignored ticks left out); its argmax is the majority class
    assert proba["majority"][0, 0] == pytest.approx(np.bincount(y[:-5], minlength=3) / 2995)
    assert (proba["majority"][:, 1] == [0, 1, 0]).all()
    # a horizon with one class only: that class gets probability 1
    assert np.allclose(proba["logreg"][:, 1], [0, 1, 0]) and np.allclose(proba["hgb"][:, 1], [0, 1, 0])
    # scikit-learn's fit is the minimiser of the same objective as the previous torch L-BFGS fit
    ref = _torch_lbfgs_logreg(x[:-5], y[:-5], l2=1e-3)
    assert np.abs(proba["logreg"][:-5, 0] - ref).max() < 1e-3


def documented_edges() -> dict:
    """The edge column of docs/results.md's table on the default data, as metrics.json states it: +1 where the
    95% block-bootstrap interval of (model - best baseline) shows the model better, -1 the baseline, 0 none."""
    text = (Path(__file__).parents[2] / "docs" / "results.md").read_text()
    rows = re.findall(r"^\| (h\d+) (macro-F1|log-loss) \|.*\| (model|baseline|none) \|$", text, re.M)
    edges = {}
    for h, metric, edge in rows:
        edges.setdefault(h, {})[metric.replace("-", "_").lower()] = {"model": 1, "baseline": -1, "none": 0}[edge]
    return edges


def test_the_documented_edges_are_read():
    """The table the slow test below asserts is where it says (else it would assert nothing)."""
    assert set(documented_edges()) == {"h10", "h50", "h100"}
    assert all(set(e) == {"macro_f1", "log_loss"} for e in documented_edges().values())


@pytest.mark.slow
def test_default_tiny_run_has_the_documented_edges(tmp_path):
    """docs/results.md's promise: `lob simulate` defaults, `lob train` defaults with the simulator's recorded recipe
    (``SIMULATOR_RECIPE_ARGS``), `lob evaluate` -> its edges
    (against majority, logreg and hgb: the table predates the DeepLOB baseline, left out with --deeplob-steps 0)."""
    from typer.testing import CliRunner

    from lob.cli import app
    from lob.training.config import SIMULATOR_RECIPE_ARGS

    cli = CliRunner()
    for args in (["simulate", "--out", str(tmp_path / "data")],
                 ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *SIMULATOR_RECIPE_ARGS],
                 ["evaluate", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--deeplob-steps", "0"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    got = {h: d["significant"] for h, d in m["direction"].items()}
    assert got == documented_edges()
    # next event: the model's top-1 beats every baseline (markov-1 is the best)
    assert m["margins"]["next_event.top1"] > 0


def test_markov1_perplexity_is_a_proper_distribution_tuned_on_validation():
    rng = np.random.default_rng(0)
    chain = np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])  # a 3-token Markov chain

    def draw(n):
        t = [0]
        for _ in range(n - 1):
            t.append(rng.choice(3, p=chain[t[-1]]))
        return np.array(t)

    b = TokenBaselines.fit([draw(3000)], vocab_size=4, val_tokens=[draw(1000)])
    probs = np.exp(b.markov_logp)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-12)  # every row, the unseen token 3 too
    assert (probs > 0).all()  # smoothing: no next token is impossible
    # with plenty of data the fitted chain is the true one, and its perplexity beats the unigram's (3)
    np.testing.assert_allclose(probs[:3, :3], chain, atol=0.05)
    test = draw(2000)
    ppl = np.exp(-b.markov_log_prob(test).mean())
    entropy = -(chain * np.log(chain)).sum(1).mean()  # the chain's own perplexity is exp(entropy)
    assert ppl == pytest.approx(np.exp(entropy), rel=0.05) and ppl < 2.5
