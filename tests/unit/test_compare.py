"""`lob compare`: runs side by side from their JSON files, seeds of one design averaged, bad folders named."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.evaluation.compare import compare_runs, design_table, run_table

TRAINING = {"arch": "transformer", "preset": "tiny", "model_options": {}, "max_steps": 700, "lr": 0.003,
            "split": [0.7, 0.15, 0.15]}


def _direction(model_ll: float, ci: list[float], edge: int) -> dict:
    return {"log_loss": model_ll, "macro_f1": 0.34,
            "baselines": {"majority": {"log_loss": model_ll + 0.05, "macro_f1": 0.33},
                          "logreg": {"log_loss": model_ll + 0.02, "macro_f1": 0.30}},
            "best_baseline": {"log_loss": "logreg", "macro_f1": "majority"},
            "ci95": {"log_loss": ci, "macro_f1": None}, "significant": {"log_loss": edge, "macro_f1": 0}}


def _run(root: Path, name: str, seed: int, val_loss: float, edge: int, window: int = 512, **training) -> Path:
    run = root / name
    run.mkdir()
    files = {
        "config.json": {"training": {**TRAINING, **training, "seed": seed}, "model": {"window": window, "d_model": 32}},
        "train_metrics.json": {"best_val_loss": val_loss, "best_step": 600, "steps_run": 700},
        "manifest.json": {"n_parameters": 54_633},
        # keys out of order, as json.dumps(sort_keys=True) writes them
        "metrics.json": {"next_event": {"perplexity": 50.0, "top1": 0.066, "baselines": {"markov1": {"top1": 0.06}}},
                         "direction": {"h10": _direction(0.01, [-0.001, 0.002], 0),
                                       "h100": _direction(0.30, [-0.03, -0.01], edge),
                                       "h50": _direction(0.10, [-0.02, 0.01], 0)},
                         "backtest": {"h100": {"model": {"trades": 20, "total_pnl_bps": -52.08}}}},
    }
    for file, content in files.items():
        (run / file).write_text(json.dumps(content))
    return run


def test_rows_show_model_minus_best_baseline_with_interval_and_edge(tmp_path):
    rows, _ = compare_runs([_run(tmp_path, "a", 0, 1.0, 1)])
    header, (row,) = run_table(rows)
    cells = dict(zip(header, row))
    assert cells["design"] == "transformer tiny W=512"
    assert cells["best val loss (step/run)"] == "1.0000 (600/700)"
    assert cells["top-1 (markov1)"] == "0.0660 (0.0600)"
    assert [h.split()[0] for h in header if "log-loss" in h] == ["h10", "h50", "h100"]
    assert cells["h100 log-loss Δ [95% CI], edge"] == "-0.0200 [-0.0300, -0.0100] model"  # 0.30 - 0.32 (logreg)
    assert cells["h100 macro-F1 Δ, edge"] == "+0.0100 [too few ticks] none"  # 0.34 - 0.33 (majority)
    assert cells["h100 trades, PnL bps"] == "20, -52.1"


def test_seeds_of_one_design_are_averaged_and_other_designs_kept_apart(tmp_path):
    runs = [_run(tmp_path, "s0", 0, 1.0, 1), _run(tmp_path, "s1", 1, 1.2, 0),
            _run(tmp_path, "w128", 0, 0.9, -1, window=128, model_options={"window": 128})]
    rows, groups = compare_runs(runs)
    assert [r.run for r in rows] == ["s0", "s1", "w128"]
    assert sorted(len(g) for g in groups.values()) == [1, 2]
    header, body = design_table(groups)
    assert len(body) == 1  # the one-seed design has no spread to report
    cells = dict(zip(header, body[0]))
    assert cells["design"] == "transformer tiny W=512" and cells["seeds"] == "0, 1"
    assert cells["best val loss"] == "1.1000 ± 0.1414"
    assert cells["h100 log-loss Δ (edges +/−)"] == "-0.0200 ± 0.0000 (1/0)"
    assert rows[2].design == "transformer tiny W=128"


def test_a_preset_and_the_same_config_by_model_opt_are_one_design(tmp_path):
    """Runs written before `--model-opt` existed (no "model_options") and runs reaching the preset's config
    through it group together; another model config does not."""
    old = _run(tmp_path, "old", 0, 1.0, 0)
    config = json.loads((old / "config.json").read_text())
    del config["training"]["model_options"]
    (old / "config.json").write_text(json.dumps(config))
    by_option = _run(tmp_path, "opt", 1, 1.1, 0, model_options={"window": 512})
    other = _run(tmp_path, "other", 2, 1.1, 0, window=128)
    _, groups = compare_runs([old, by_option, other])
    assert sorted([r.run for r in g] for g in groups.values()) == [["old", "opt"], ["other"]]


def test_other_training_arguments_make_another_design(tmp_path):
    rows, groups = compare_runs([_run(tmp_path, "a", 0, 1.0, 0), _run(tmp_path, "b", 1, 1.0, 0, max_steps=100),
                                 _run(tmp_path, "c", 2, 1.0, 0, labels="smoothed", dir_init="zero")])
    assert len(groups) == 3
    # the label says what differs, so two designs never read alike
    assert [r.design for r in rows] == ["transformer tiny W=512", "transformer tiny max_steps=100 W=512",
                                        "transformer tiny labels=smoothed dir_init=zero W=512"]


def test_unevaluated_or_duplicate_runs_are_refused_by_name(tmp_path):
    run = _run(tmp_path, "a", 0, 1.0, 0)
    twin = _run(tmp_path, "twin", 0, 1.0, 0)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.json").write_text(json.dumps({"training": TRAINING, "model": {}}))
    (tmp_path / "new" / "train_metrics.json").write_text("{}")
    result = CliRunner().invoke(app, ["compare", str(run), str(tmp_path / "new")])
    assert result.exit_code == 2
    assert "metrics.json" in result.output and "lob evaluate" in result.output
    with pytest.raises(ValueError, match="same design and seed"):
        compare_runs([run, twin])


def test_markdown_holds_both_tables(tmp_path):
    out = tmp_path / "table.md"
    result = CliRunner().invoke(app, ["compare", str(_run(tmp_path, "s0", 0, 1.0, 1)),
                                      str(_run(tmp_path, "s1", 1, 1.2, 0)), "--markdown", str(out)])
    assert result.exit_code == 0, result.output
    tables = out.read_text().split("\n\n")
    assert len(tables) == 2
    assert len(tables[0].splitlines()) == 4  # header, rule, 2 runs
    assert "| s1 | transformer tiny W=512 | 1 |" in tables[0]
    assert "1.1000 ± 0.1414" in tables[1]
