"""`lob`: the command line of Mamba-LOB. Each command is a thin wrapper over one module's function."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Mamba-LOB: simulate or import L2 ticks, train, evaluate, export, serve on Triton.")
import_app = typer.Typer(no_args_is_help=True, help="Import real market data into the canonical tick table.")
app.add_typer(import_app, name="import")


def _symbols(arg: Optional[str]) -> Optional[list[str]]:
    return [s.strip() for s in arg.split(",") if s.strip()] if arg else None


def _fail(err: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {err}")
    raise typer.Exit(code=2)


# ------------------------------------------------------------------------------------------------ market data

@app.command()
def simulate(
    out: Path = typer.Option(..., help="Output folder (DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)."),
    symbols: int = typer.Option(4, min=1, max=26, help="Number of symbols."),
    days: int = typer.Option(3, min=1, help="Trading days per symbol."),
    seed: int = typer.Option(0, help="Random seed; same seed, same ticks."),
    events_per_day: int = typer.Option(20_000, min=100, help="Average book events per symbol-day."),
    start_date: str = typer.Option("2024-01-02", help="First trading day (weekdays follow)."),
):
    """Simulate a multi-symbol L2 market (queue-reactive, Hawkes-excited order flow)."""
    from lob.data.simulator import simulate_dataset

    simulate_dataset(out, n_symbols=symbols, n_days=days, seed=seed, events_per_day=events_per_day,
                     start_date=start_date)


@import_app.command("lobster")
def import_lobster_cmd(
    message: Path = typer.Option(..., exists=True, dir_okay=False, help="LOBSTER message CSV."),
    orderbook: Path = typer.Option(..., exists=True, dir_okay=False, help="LOBSTER orderbook CSV (1..50 levels)."),
    symbol: str = typer.Option(..., help="Symbol to record."),
    date: str = typer.Option(..., help="Trading date, YYYY-MM-DD."),
    out: Path = typer.Option(..., help="Dataset folder to write into."),
    tick_size: float = typer.Option(0.01, help="Price grid of the instrument (price units)."),
):
    """Import a LOBSTER message + orderbook pair."""
    from lob.data.lobster import import_lobster
    from lob.data.schema import TickDataError

    try:
        import_lobster(message, orderbook, symbol=symbol, date=date, out=out, tick_size=tick_size)
    except TickDataError as err:
        _fail(err)


@import_app.command("binance-bookticker")
def import_binance_cmd(
    file: Path = typer.Option(..., exists=True, dir_okay=False, help="Binance bookTicker CSV."),
    symbol: str = typer.Option(..., help="Symbol to record."),
    out: Path = typer.Option(..., help="Dataset folder to write into."),
    tick_size: float = typer.Option(0.1, help="Price grid of the instrument (price units)."),
):
    """Import a Binance bookTicker CSV (best bid/ask only, ms timestamps)."""
    from lob.data.binance import import_binance_bookticker
    from lob.data.schema import TickDataError

    try:
        import_binance_bookticker(file, symbol=symbol, out=out, tick_size=tick_size)
    except TickDataError as err:
        _fail(err)


# ------------------------------------------------------------------------------------------- model lifecycle

# a missing/unfinished run, an existing output, bad or mismatched data: a one-line error, not a traceback
from lob.training.run import RunError  # noqa: E402 (stdlib + numpy only)

_USER_ERRORS = (FileExistsError, FileNotFoundError, KeyError, ValueError, RunError)

@app.command()
def train(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder."),
    out: Path = typer.Option(..., help="Run folder to create."),
    preset: str = typer.Option("tiny", help="Model preset: tiny | small | base."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Stop after this many optimiser steps."),
    seed: int = typer.Option(0, help="Seed for initialisation and batching."),
    fee_bps: float = typer.Option(0.5, min=0.0, help="Fee per side in bps; the flat band pays it on both legs."),
    labels: str = typer.Option("cost", help="cost (round-trip band, default) | smoothed (DeepLOB/FI-2010 protocol)."),
    smooth_bps: float = typer.Option(0.5, min=0.0, help="Threshold of the smoothed labels, bps of mid."),
    force: bool = typer.Option(False, help="Replace an existing run folder."),
    resume: bool = typer.Option(False, help="Continue an interrupted run (same arguments) from its last evaluation."),
):
    """Train Mamba-LOB with a chronological train/validation/test split."""
    from lob.training.train import train as run_train

    try:
        run_train(data, out, preset=preset, max_steps=max_steps, seed=seed, fee_bps=fee_bps, force=force,
                  resume=resume, labels=labels, smooth_bps=smooth_bps)
    except _USER_ERRORS as err:
        _fail(err)


@app.command()
def evaluate(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder (the one trained on)."),
    walk_forward: Optional[int] = typer.Option(None, min=2, help="Instead: retrain and evaluate on K expanding "
                                               "time folds with the run's arguments (RUN/walk_forward.json)."),
    n_boot: int = typer.Option(1000, min=100, help="Block-bootstrap resamples of the 95% intervals."),
):
    """Score the held-out test split against baselines with 95% intervals and a cost-aware backtest;
    writes RUN/metrics.json and RUN/report.png."""
    from lob.evaluation.evaluate import evaluate as run_evaluate
    from lob.evaluation.walk_forward import walk_forward as run_walk_forward

    try:
        if walk_forward is not None:
            run_walk_forward(run, data, walk_forward, n_boot=n_boot)
        else:
            run_evaluate(run, data, n_boot=n_boot)
    except _USER_ERRORS as err:
        _fail(err)


@app.command()
def predict(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder."),
    out: Path = typer.Option(..., help="Predictions parquet to write."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (default: all)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N ticks of each symbol."),
):
    """Offline per-tick scoring, one row per tick (the schema `lob stream` writes)."""
    from lob.evaluation.predict import predict as run_predict

    try:
        run_predict(run, data, out, symbols=_symbols(symbols), limit=limit)
    except _USER_ERRORS as err:
        _fail(err)


@app.command()
def export(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    repo: Path = typer.Option(Path("model_repository"), file_okay=False, help="Triton model repository."),
):
    """Export the one-tick step model to ONNX and the tokenizer into the model repository."""
    from lob.export.repository import export_repository

    try:
        typer.echo(f"exported model_version {export_repository(run, repo)} into {repo}")
    except _USER_ERRORS as err:
        _fail(err)


# ---------------------------------------------------------------------------------------------------- serving

@app.command()
def serve(
    repo: Path = typer.Option(Path("model_repository"), exists=True, file_okay=False, help="Model repository."),
    profile: str = typer.Option("cpu", help="cpu | gpu-onnx | gpu-fp16 | gpu-bf16"),
    grpc_port: int = typer.Option(8001), http_port: int = typer.Option(8000), metrics_port: int = typer.Option(8002),
    log_file: Path = typer.Option(Path("out/tritonserver.log"), help="Server log file."),
):
    """Start a real Triton Inference Server on the repository; Ctrl-C stops it cleanly."""
    from lob.serving.launcher import serve_forever

    serve_forever(repo, profile=profile, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                  log_file=log_file)


@app.command()
def stream(
    url: str = typer.Option("localhost:8001", help="Triton gRPC endpoint."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder to replay."),
    out: Path = typer.Option(..., help="Predictions parquet to write (schema of `lob predict`)."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (default: all)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N ticks of each symbol."),
    model: str = typer.Option("lob_stream", help="Ensemble to stream through."),
):
    """Replay recorded ticks through the server over one gRPC stream; prints latency percentiles."""
    from lob.serving.replay import replay

    replay(url, data, out, symbols=_symbols(symbols), limit=limit, model=model)


@app.command()
def validate(repo: Path = typer.Argument(..., exists=True, file_okay=False, help="Model repository.")):
    """Check a model repository's configs, files and wiring; non-zero exit on any fault."""
    from lob.export.validate import validate_repository

    problems = validate_repository(repo)
    if problems:
        from rich.console import Console

        err = Console(stderr=True)
        for p in problems:
            err.print(f"[red]✗[/] {p}")
        raise typer.Exit(code=1)
    typer.echo(f"{repo}: ok")


@app.command("build-trt")
def build_trt(
    repo: Path = typer.Option(Path("model_repository"), exists=True, file_okay=False, help="Model repository."),
    precision: str = typer.Option("fp16,bf16", help="Comma-separated: fp16, bf16."),
    max_batch: int = typer.Option(4096, min=1, help="Largest batch of the optimisation profile."),
):
    """Build TensorRT engines (model.plan) from the exported ONNX; needs a CUDA GPU."""
    from lob.export.trt import TrtBuildError, build_engines

    try:
        for path in build_engines(repo, precisions=_symbols(precision) or [], max_batch=max_batch):
            typer.echo(f"wrote {path}")
    except (TrtBuildError, ValueError, FileNotFoundError) as err:
        _fail(err)


if __name__ == "__main__":
    app()
