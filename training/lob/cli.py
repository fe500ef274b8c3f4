"""`lob`: the command line of Mamba-LOB. Each command is a thin wrapper over one module's function.

A user-facing error (``@user_errors``: bad or missing data, an existing output, a refused run or config,
Redis, a TensorRT build) ends a command with one red line naming what is wrong and exit status 2.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

from lob.contract import MAX_CHUNK, STEP_MODEL, STREAM_MODEL
from lob.serving.launcher import GRPC_STATE_POOL  # stdlib only
from lob.training.config import RECIPE_MODEL_OPTIONS, TrainConfig  # numpy only: the train options' defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Mamba-LOB: simulate or import L2 ticks, train, evaluate, export, serve on Triton.")
import_app = typer.Typer(no_args_is_help=True, help="Import real market data into the canonical tick table.")
app.add_typer(import_app, name="import")
live_app = typer.Typer(no_args_is_help=True, help="Stream a live market through the server.")
app.add_typer(live_app, name="live")


def _symbols(arg: Optional[str]) -> Optional[list[str]]:
    return [s.strip() for s in arg.split(",") if s.strip()] if arg else None


# the project's user-facing errors (TickDataError is a ValueError; RunError: a missing, unfinished or
# inconsistent run folder), and those of optional or heavy modules, caught once their module is imported
_USER_ERRORS = (FileExistsError, FileNotFoundError, KeyError, ValueError)
_USER_ERRORS_OF_MODULES = (("lob.training.run", "RunError"), ("lob.export.trt", "TrtBuildError"),
                           ("redis", "RedisError"))


def _user_error_types() -> tuple[type[Exception], ...]:
    """_USER_ERRORS and the _USER_ERRORS_OF_MODULES whose module the command imported."""
    return _USER_ERRORS + tuple(getattr(sys.modules[module], name) for module, name in _USER_ERRORS_OF_MODULES
                                if module in sys.modules)


def _fail(err: Exception) -> None:
    """One red line on stderr, exit status 2."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {err}")
    raise typer.Exit(code=2)


def user_errors(command):
    """Decorate a command: a user-facing error it raises becomes ``_fail``'s one line, not a traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _user_error_types() as err:
            _fail(err)
    return run


# ------------------------------------------------------------------------------------------------ market data

@app.command()
@user_errors
def simulate(
    out: Path = typer.Option(..., help="Output folder (DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)."),
    symbols: int = typer.Option(4, min=1, max=26, help="Number of symbols."),
    days: int = typer.Option(3, min=1, help="Trading days per symbol."),
    seed: int = typer.Option(0, help="Random seed; same seed, same ticks."),
    events_per_day: Optional[int] = typer.Option(None, min=100, help="Book events per symbol-day "
                                                 "(default: 20000, or the calibrated instrument's)."),
    start_date: str = typer.Option("2024-01-02", help="First trading day (weekdays follow)."),
    params: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                          help="Instrument from `lob calibrate` (PARAMS.json): simulate it alone "
                                               "(--symbols, --instruments and --clock are ignored)."),
    instruments: str = typer.Option("calibrated", help="calibrated (default: symbols alternate between the "
                                    "instruments fitted to real GOOG and AAPL days, each with its fitted bursty "
                                    "clock) | archetypes (the 6 hand-set instruments of earlier versions)."),
    clock: str = typer.Option("business", help="Archetypes' event clock: business (evenly spread by order-flow "
                                               "intensity) | hawkes (bursty, millisecond clusters)."),
):
    """Simulate a multi-symbol L2 market (queue-reactive, Hawkes-excited order flow; optional bursty clock)."""
    from lob.data.simulator import simulate_dataset

    specs = None
    if params is not None:
        from lob.data.instruments import load_params

        spec, calibrated_events = load_params(params)
        specs, symbols = [spec], 1
        events_per_day = events_per_day or calibrated_events
    simulate_dataset(out, n_symbols=symbols, n_days=days, seed=seed, events_per_day=events_per_day or 20_000,
                     start_date=start_date, specs=specs, clock=clock, instruments=instruments)


@app.command()
@user_errors
def calibrate(
    data: str = typer.Option(..., metavar="DIR[:SYMBOL][@PART]", help="Real dataset (one symbol) to fit; @train, @val, "
                             "@test or @heldout (val + test): that chronological part, as `lob train` splits."),
    out: Path = typer.Option(..., help="Instrument PARAMS.json to write (for `lob simulate --params`)."),
    seed: int = typer.Option(0, help="Seed of the simulations inside the fit (common random numbers)."),
):
    """Fit a simulator instrument to a real dataset (method of moments + simulated moments)."""
    from rich.console import Console

    from lob.realism.calibrate import calibrate as run_calibrate

    params = run_calibrate(data, out, seed=seed)
    Console().print_json(data={"instrument": params["instrument"], "moments [real, simulated]": params["moments"]})


@import_app.command("lobster")
@user_errors
def import_lobster_cmd(
    zips: Optional[list[Path]] = typer.Option(None, "--zip", exists=True,
                                              help="LOBSTER zip as downloaded, or a folder of them (every *.zip); "
                                                   "repeatable. Symbol, date and levels come from the member names."),
    message: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="LOBSTER message CSV (not with --zip)."),
    orderbook: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                             help="LOBSTER orderbook CSV, 1..50 levels (not with --zip)."),
    symbol: Optional[str] = typer.Option(None, help="Symbol to record (with --zip: optional, must match the names)."),
    date: Optional[str] = typer.Option(None, help="Trading date, YYYY-MM-DD (with --zip: optional, must match the names)."),
    out: Path = typer.Option(..., help="Dataset folder to write into."),
    tick_size: float = typer.Option(0.01, help="Price grid of the instrument (price units)."),
):
    """Import LOBSTER days: zips as downloaded (--zip), or one message + orderbook CSV pair."""
    from lob.data.lobster import import_lobster, import_lobster_zips

    if zips:
        if message or orderbook:
            raise typer.BadParameter("--zip reads the CSVs from the zip; --message/--orderbook go without it")
        import_lobster_zips(zips, out=out, tick_size=tick_size, symbol=symbol, date=date)
        return
    missing = [flag for flag, value in (("--message", message), ("--orderbook", orderbook), ("--symbol", symbol),
                                        ("--date", date)) if value is None]
    if missing:
        raise typer.BadParameter(f"give --zip, or --message, --orderbook, --symbol and --date (missing: {', '.join(missing)})")
    import_lobster(message, orderbook, symbol=symbol, date=date, out=out, tick_size=tick_size)


@app.command("export-lobster")
@user_errors
def export_lobster_cmd(
    data: Path = typer.Argument(..., exists=True, file_okay=False, help="Dataset folder (imported, simulated, ...)."),
    out: Path = typer.Option(..., help="Folder for the message + orderbook CSV pairs."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (default: all)."),
):
    """Write a dataset as LOBSTER message + orderbook CSVs, one pair per symbol-day (order ids synthesised)."""
    from lob.data.lobster_export import export_lobster

    export_lobster(data, out, symbols=_symbols(symbols))


@import_app.command("binance-bookticker")
@user_errors
def import_binance_cmd(
    file: Path = typer.Option(..., exists=True, dir_okay=False, help="Binance bookTicker CSV."),
    symbol: str = typer.Option(..., help="Symbol to record."),
    out: Path = typer.Option(..., help="Dataset folder to write into."),
    tick_size: float = typer.Option(0.1, help="Price grid of the instrument (price units)."),
):
    """Import a Binance bookTicker CSV (best bid/ask only, ms timestamps)."""
    from lob.data.binance import import_binance_bookticker

    import_binance_bookticker(file, symbol=symbol, out=out, tick_size=tick_size)


@import_app.command("binance-ws")
@user_errors
def import_binance_ws_cmd(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Recorded websocket files of one "
                                       "session, in order (lines '<receive ns> <JSON>', gzip or plain); the first "
                                       "holds the REST snapshot."),
    out: Path = typer.Option(..., help="Dataset folder to write into."),
    symbol: Optional[str] = typer.Option(None, help="Symbol (default: the messages' 's'; given, they must match)."),
    market: str = typer.Option("usdm", help="usdm | coinm | spot: the update-id rules the diffs follow."),
    time: str = typer.Option("local", help="Tick clock: local (receive time, default) | exchange (T/E, made "
                             "non-decreasing)."),
    ticks_from: str = typer.Option("diffs", help="diffs (book ticks from depth diffs, default) | touch (also "
                                   "from bookTicker's fresher best level)."),
    tick_size: Optional[float] = typer.Option(None, help="Price grid (default: inferred from the snapshot)."),
):
    """Import recorded Binance websocket sessions (snapshot + depthUpdate diffs, bookTicker, trade) as 10-level ticks."""
    from lob.data.binance_ws import import_binance_ws

    import_binance_ws(files, out, symbol=symbol, market=market, time=time, ticks_from=ticks_from, tick_size=tick_size)


@app.command()
@user_errors
def realism(
    data_a: str = typer.Argument(..., metavar="DIR_A[:SYMBOL][@PART]", help="Dataset to judge (e.g. a simulation)."),
    data_b: str = typer.Argument(..., metavar="DIR_B[:SYMBOL][@PART]",
                                 help="Reference dataset (e.g. a real day; real:GOOG@test: the last 15% of its "
                                      "trading time, `lob train`'s test part; @train, @val, @heldout = val + test)."),
    out: Optional[Path] = typer.Option(None, help="Report JSON to write (and a PNG beside it)."),
):
    """Stylized facts of two datasets side by side and their distances (TV, Wasserstein-1), and LOB-Bench's 24
    scores beside the reference's real-vs-real floor."""
    from lob.realism.report import print_report, realism_report

    print_report(realism_report(data_a, data_b, out))


@import_app.command("binance")
@user_errors
def import_binance_merged_cmd(
    bookticker: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Binance bookTicker CSV."),
    trades: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Binance aggTrades CSV (same period)."),
    symbol: str = typer.Option(..., help="Symbol to record."),
    out: Path = typer.Option(..., help="Dataset folder to write into."),
    tick_size: float = typer.Option(0.1, help="Price grid of the instrument (price units)."),
):
    """Import Binance bookTicker rows merged in time order with aggTrades prints (aggressor side kept)."""
    from lob.data.binance import import_binance

    import_binance(bookticker, trades, symbol=symbol, out=out, tick_size=tick_size)


# ------------------------------------------------------------------------------------------- model lifecycle

@app.command()
@user_errors
def train(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder."),
    out: Path = typer.Option(..., help="Run folder to create."),
    arch: str = typer.Option(TrainConfig.arch, help="Architecture: mamba | transformer | hybrid."),
    preset: str = typer.Option(TrainConfig.preset, help="Model preset: tiny | small | base."),
    model_opt: list[str] = typer.Option([], "--model-opt", help="KEY=VALUE replacing a preset's config field, "
                                        "repeatable (e.g. window=128 attn_every=2 n_layer=4); the recipe sets "
                                        "feature_skip=1 (give feature_skip=0 to turn it off)."),
    max_steps: int = typer.Option(TrainConfig.max_steps, min=1, help="Stop after this many optimiser steps."),
    seed: int = typer.Option(TrainConfig.seed, help="Seed for initialisation and batching."),
    fee_bps: float = typer.Option(TrainConfig.fee_bps, min=0.0,
                                  help="Fee per side in bps; the flat band pays it on both legs."),
    labels: str = typer.Option(TrainConfig.labels,
                               help="cost (round-trip band, default) | smoothed (DeepLOB/FI-2010 protocol)."),
    smooth_bps: float = typer.Option(TrainConfig.smooth_bps, min=0.0, help="Threshold of the smoothed labels, bps "
                                     "of mid."),
    lr: float = typer.Option(TrainConfig.lr, min=0.0, help="Peak learning rate (AdamW, warmup then cosine)."),
    lambda_next: float = typer.Option(TrainConfig.lambda_next, min=0.0, help="Weight of the next-event loss "
                                      "beside the direction loss."),
    w_max: float = typer.Option(TrainConfig.w_max, min=1.0, help="Cap of the cost labels' move-size weight "
                                "(1: plain cross-entropy)."),
    window: int = typer.Option(TrainConfig.window, min=2, help="Ticks per training window."),
    batch_size: int = typer.Option(TrainConfig.batch_size, min=1, help="Windows per optimiser step."),
    dir_init: str = typer.Option(TrainConfig.dir_init, help="How the direction heads start: zero | logreg (as "
                                 "the train split's logistic regression; needs feature_skip=1)."),
    dir_readout: str = typer.Option(TrainConfig.dir_readout, help="How they end: sgd (as trained) | probe (refit "
                                    "on the frozen trunk as a logistic regression, L2 chosen on validation)."),
    select_on: str = typer.Option(TrainConfig.select_on, help="Weights kept: dir (lowest validation direction "
                                  "loss once next-event beats Markov-1) | loss (lowest total validation loss). "
                                  "Early stopping counts the total loss either way."),
    force: bool = typer.Option(False, help="Replace an existing run folder."),
    resume: bool = typer.Option(False, help="Continue an interrupted run (same arguments) from its last evaluation."),
):
    """Train a model (Mamba-LOB, Transformer or hybrid) with a chronological train/validation/test split."""
    from lob.training.train import train as run_train

    cfg = TrainConfig(arch=arch, preset=preset, model_options={**RECIPE_MODEL_OPTIONS, **_model_options(model_opt)},
                      max_steps=max_steps,
                      seed=seed, fee_bps=fee_bps, labels=labels, smooth_bps=smooth_bps, lr=lr,
                      lambda_next=lambda_next, w_max=w_max, window=window, batch_size=batch_size,
                      dir_init=dir_init, dir_readout=dir_readout, select_on=select_on)
    run_train(data, out, cfg, force=force, resume=resume)


def _model_options(pairs: list[str]) -> dict:
    """["window=128", "rope_theta=5e4", "d_ff=auto"] -> {"window": 128, "rope_theta": 50000.0, "d_ff": "auto"}."""
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--model-opt")
        for parse in (int, float, str):
            try:
                options[key] = parse(text)
                break
            except ValueError:
                continue
    return options


@app.command()
@user_errors
def evaluate(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder (the one trained on)."),
    walk_forward: Optional[int] = typer.Option(None, min=2, help="Instead: retrain and evaluate on K expanding "
                                               "time folds with the run's arguments (RUN/walk_forward.json)."),
    n_boot: int = typer.Option(1000, min=100, help="Block-bootstrap resamples of the 95% intervals."),
    deeplob_steps: Optional[int] = typer.Option(None, min=0, help="Adam steps at most for the DeepLOB baseline, "
                                                "early-stopped on validation (default: lob.evaluation.deeplob."
                                                "DEFAULT_STEPS; 0 = no DeepLOB)."),
    on: str = typer.Option("test", help="Split to score: test (RUN/metrics.json) | val (for tuning: "
                           "RUN/metrics.val.json; the test split is not read)."),
    score_data: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="Out of sample across "
                                              "names: score the model and the baselines fitted on --data on "
                                              "this dataset's names (split alike) instead: "
                                              "RUN/metrics.on-<NAMES>.json."),
):
    """Score the held-out test split against baselines (majority, logistic regression, trees, DeepLOB) with
    95% intervals and a cost-aware backtest; writes RUN/metrics.json and RUN/report.png."""
    from lob.evaluation.evaluate import evaluate as run_evaluate
    from lob.evaluation.walk_forward import walk_forward as run_walk_forward

    if walk_forward is not None:
        run_walk_forward(run, data, walk_forward, n_boot=n_boot, deeplob_steps=deeplob_steps)
    else:
        run_evaluate(run, data, n_boot=n_boot, deeplob_steps=deeplob_steps, part=on, score_data=score_data)


@app.command("compare")
@user_errors
def compare_cmd(
    runs: list[Path] = typer.Argument(..., help="Evaluated run folders (`lob evaluate` first)."),
    markdown: Optional[Path] = typer.Option(None, help="Also write the tables as Markdown to this file."),
):
    """Evaluated runs side by side, and each design's mean ± sd over its seeds."""
    from lob.evaluation.compare import compare_runs, print_tables, write_markdown

    rows, groups = compare_runs(runs)
    print_tables(rows, groups)
    if markdown is not None:
        write_markdown(markdown, rows, groups)


@app.command()
@user_errors
def predict(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder."),
    out: Path = typer.Option(..., help="Predictions parquet to write."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (default: all)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N ticks of each symbol."),
):
    """Offline per-tick scoring, one row per tick (the schema `lob stream` writes)."""
    from lob.evaluation.predict import predict as run_predict

    run_predict(run, data, out, symbols=_symbols(symbols), limit=limit)


@app.command()
@user_errors
def generate(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder (the one trained on)."),
    out: Path = typer.Option(..., file_okay=False, help="Folder for rollouts.parquet, facts.json, facts.png."),
    prompt_ticks: int = typer.Option(512, min=1, help="Real held-out ticks the rollouts start from."),
    steps: int = typer.Option(2000, min=1, help="Ticks generated per rollout."),
    rollouts: int = typer.Option(16, min=1, help="Rollouts, sampled as one batch."),
    top_k: int = typer.Option(16, min=1, help="Sample among the k most likely next tokens."),
    temperature: float = typer.Option(1.0, min=1e-6, help="Softmax temperature."),
    seed: int = typer.Option(0, help="Seed of the sampler; same seed, same rollouts."),
    symbol: Optional[str] = typer.Option(None, help="Symbol whose test segment gives the prompt (default: first)."),
):
    """Sample synthetic order flow from a held-out prompt; stylized facts against the real continuation."""
    from lob.evaluation.generate import fmt_value
    from lob.evaluation.generate import generate as run_generate

    facts = run_generate(run, data, out, prompt_ticks=prompt_ticks, steps=steps, rollouts=rollouts, top_k=top_k,
                         temperature=temperature, seed=seed, symbol=symbol)
    tv = "  ".join(f"{k} {v:.3f}" for k, v in facts["tv_distance"].items())
    kurtosis = facts["pearson_kurtosis"]
    typer.echo(f"TV distances: {tv}; Pearson kurtosis generated {fmt_value(kurtosis['generated'])} real "
               f"{fmt_value(kurtosis['real'])}; real-continuation perplexity "
               f"{facts['real_continuation']['perplexity']:.1f}; wrote {out}")


@app.command()
@user_errors
def export(
    run: Path = typer.Option(..., exists=True, file_okay=False, help="Run folder from `lob train`."),
    repo: Path = typer.Option(Path("build/model_repository"), file_okay=False,
                              help="Build repository to write (replaced if a previous export)."),
    source: Path = typer.Option(Path("model_repository"), exists=True, file_okay=False,
                                help="The tracked repository it is made from (never written)."),
):
    """Build a model repository for the run: the tracked configs plus the step model (ONNX) and tokenizer."""
    from lob.export.repository import export_repository

    typer.echo(f"exported model_version {export_repository(run, repo, source)} into {repo}")


# ---------------------------------------------------------------------------------------------------- serving

@app.command()
@user_errors
def serve(
    repo: Path = typer.Option(Path("build/model_repository"), exists=True, file_okay=False,
                              help="Model repository (`lob export` builds it)."),
    profile: str = typer.Option("cpu", help="cpu | gpu-onnx | gpu-fp16 | gpu-bf16"),
    grpc_port: int = typer.Option(8001), http_port: int = typer.Option(8000), metrics_port: int = typer.Option(8002),
    log_file: Path = typer.Option(Path("out/tritonserver.log"), help="Server log file."),
    tls_cert: Optional[Path] = typer.Option(None, help="gRPC TLS: server certificate (PEM)."),
    tls_key: Optional[Path] = typer.Option(None, help="gRPC TLS: server private key (PEM)."),
    tls_ca: Optional[Path] = typer.Option(None, help="gRPC mutual TLS: CA that client certificates must chain to."),
    admin_key: Optional[str] = typer.Option(None, envvar="LOB_ADMIN_KEY",
                                            help="Value of header lob-admin-key that unlocks model load/unload and "
                                                 "shared memory (default: random, i.e. locked)."),
    grpc_state_pool: int = typer.Option(GRPC_STATE_POOL, "--grpc-infer-allocation-pool-size", min=1,
                                        help="gRPC request States the server keeps for reuse; keep it above the peak "
                                             "number of in-flight gRPC requests (below it gRPC streaming can crash "
                                             "the server: docs/serving.md, Crash safety)."),
):
    """Start a real Triton Inference Server on the repository; Ctrl-C stops it cleanly."""
    from lob.serving.launcher import TLS, serve_forever

    if (tls_cert is None) != (tls_key is None) or (tls_ca is not None and tls_cert is None):
        raise ValueError("TLS needs --tls-cert and --tls-key (and --tls-ca only with them)")
    tls = TLS(tls_cert, tls_key, tls_ca) if tls_cert is not None else None
    serve_forever(repo, profile=profile, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                  log_file=log_file, admin_key=admin_key, tls=tls, grpc_state_pool=grpc_state_pool)


@app.command()
@user_errors
def stream(
    url: str = typer.Option("localhost:8001", help="Triton gRPC endpoint."),
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Dataset folder to replay."),
    out: Path = typer.Option(..., help="Predictions parquet to write (schema of `lob predict`)."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (default: all)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N ticks of each symbol."),
    model: Optional[str] = typer.Option(None, help=f"Model to stream through (default: {STREAM_MODEL}, or "
                                        f"{STEP_MODEL} with --tokenizer)."),
    tokenizer: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                             help="The direct path: tokenize here with this tokenizer.json (the "
                                             "server's lob_tokenizer/1/tokenizer.json) and send TOKEN + FEATURES "
                                             "to the step model."),
    transport: str = typer.Option("unary", help="unary (ModelInfer calls; safe against any server) | stream (one gRPC "
                                  "bidirectional stream; the server needs --grpc-infer-allocation-pool-size, as `lob "
                                  "serve` sets it: docs/serving.md, Crash safety)."),
    tls: bool = typer.Option(False, "--tls", help="Speak TLS to the server."),
    tls_ca: Optional[Path] = typer.Option(None, help="CA certificate to trust (PEM; default: the system's). Implies --tls."),
    tls_cert: Optional[Path] = typer.Option(None, help="Client certificate chain for mutual TLS (PEM). Implies --tls."),
    tls_key: Optional[Path] = typer.Option(None, help="Client private key for mutual TLS (PEM). Implies --tls."),
    chunk: int = typer.Option(1, min=1, max=MAX_CHUNK, help="Most ticks of a symbol per request: a backfill sends "
                              "the ticks that wait behind a symbol's request in flight as one chunk (1: one per "
                              "request, as a live feed)."),
):
    """Replay recorded ticks through the server over gRPC; prints latency percentiles."""
    import lobclient

    from lob.serving.replay import replay

    secure = tls or any(f is not None for f in (tls_ca, tls_cert, tls_key))
    replay(url, data, out, symbols=_symbols(symbols), limit=limit, model=model, tokenizer=tokenizer,
           transport=lobclient.Transport(kind=transport, window=max(1024, 8 * chunk)),  # room for chunks to form
           tls=lobclient.TLS(tls_ca, tls_key, tls_cert) if secure else None, chunk=chunk)


@app.command()
@user_errors
def signal(
    url: str = typer.Option("localhost:8001", help="Triton gRPC endpoint (or the proxy in front of replicas)."),
    redis: str = typer.Option(..., "--redis", help="Redis URL, e.g. redis://localhost:6379/0."),
    data: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="Dataset folder to replay."),
    stdin: bool = typer.Option(False, "--stdin", help="Read ticks as JSON lines from stdin (a live feed)."),
    symbols: Optional[str] = typer.Option(None, help="With --data: comma-separated symbols (default: all)."),
    limit: Optional[int] = typer.Option(None, min=1, help="With --data: only the first N ticks of each symbol."),
    prefix: str = typer.Option("lob", help="Redis key prefix."),
    ttl: float = typer.Option(2.0, min=0.05, help="Heartbeat TTL in seconds (refreshed every TTL/3)."),
    model: str = typer.Option(STREAM_MODEL, help="Ensemble to stream through."),
    shards: Optional[int] = typer.Option(None, min=1, help="Spread symbols over N inner streams, each routed "
                                         "by its x-lob-shard header."),
    metrics_port: Optional[int] = typer.Option(None, min=1, max=65535, help="Serve Prometheus metrics (the "
                                               "heartbeat's time) on this port: http://ADDR:PORT/metrics."),
    metrics_addr: str = typer.Option("0.0.0.0", help="Address the metrics server binds."),
):
    """The signal sidecar: stream ticks through the server, keep each symbol's latest prediction in Redis."""
    from importlib.util import find_spec

    if find_spec("redis") is None:
        _fail(ImportError("lob signal needs redis-py: pip install './client[redis]'"))
    from lob.serving.signal import run_signal

    run_signal(url, redis, data=data, stdin=stdin, symbols=_symbols(symbols), limit=limit, prefix=prefix,
               ttl_s=ttl, model=model, shards=shards, metrics_port=metrics_port, metrics_addr=metrics_addr)


@live_app.command("binance")
@user_errors
def live_binance(
    symbols: str = typer.Option(..., help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT."),
    market: str = typer.Option("usdm", help="usdm | coinm | spot."),
    url: str = typer.Option("localhost:8001", help="Triton gRPC endpoint."),
    redis: Optional[str] = typer.Option(None, "--redis", help="Keep each symbol's latest signal in this Redis "
                                        "(the `lob signal` sidecar) instead of printing predictions."),
    out: Optional[Path] = typer.Option(None, help="Also write the predictions parquet (schema of `lob predict`) "
                                       "when it stops (not with --redis)."),
    ws_url: Optional[str] = typer.Option(None, help="Websocket base URL (default: Binance's for the market)."),
    rest_url: Optional[str] = typer.Option(None, help="REST depth endpoint (default: Binance's for the market)."),
    time: str = typer.Option("local", help="Tick clock: local (receive time) | exchange (T/E, non-decreasing)."),
    ticks_from: str = typer.Option("diffs", help="diffs | touch (as `lob import binance-ws`)."),
    max_ticks: Optional[int] = typer.Option(None, min=1, help="Stop after this many ticks (all symbols)."),
    max_seconds: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many seconds."),
    model: str = typer.Option(STREAM_MODEL, help="Ensemble to stream through."),
    prefix: str = typer.Option("lob", help="With --redis: key prefix."),
    ttl: float = typer.Option(2.0, min=0.05, help="With --redis: heartbeat TTL in seconds."),
):
    """Binance websocket streams -> rebuilt books -> the server; predictions printed, written, or kept in Redis."""
    from lob.serving.live import run_live

    if redis is not None and out is not None:
        raise typer.BadParameter("--out writes predictions; with --redis the signals go to Redis")
    run_live(_symbols(symbols) or [], market=market, url=url, redis_url=redis, out=out, ws_url=ws_url,
             rest_url=rest_url, time=time, ticks_from=ticks_from, max_ticks=max_ticks, max_seconds=max_seconds,
             model=model, prefix=prefix, ttl_s=ttl)


@app.command()
@user_errors
def top(
    url: str = typer.Option("localhost:8001", help="Triton gRPC endpoint (statistics)."),
    metrics_url: Optional[str] = typer.Option(None, help="The server's Prometheus endpoint (default: "
                                              "http://<url's host>:8002/metrics)."),
    redis: Optional[str] = typer.Option(None, "--redis", help="Also show the signals `lob signal` keeps in this Redis."),
    prefix: str = typer.Option("lob", help="Redis key prefix of the signals."),
    max_age: float = typer.Option(1.0, min=0.001, help="A signal older than this (s) shows as neutral, as "
                                  "lobclient.SignalReader reads it."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between readings."),
):
    """Live view of a server: ticks/s, latency, open sequences, refusals; with --redis the latest signals."""
    from lob.serving.top import run_top

    run_top(url, metrics_url=metrics_url, redis_url=redis, prefix=prefix, max_age_s=max_age, interval_s=interval)


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
@user_errors
def build_trt(
    repo: Path = typer.Option(Path("build/model_repository"), exists=True, file_okay=False,
                              help="Repository `lob export` wrote (the engines go beside its model.onnx)."),
    precision: str = typer.Option("fp16,bf16", help="Comma-separated: fp16, bf16."),
    max_batch: int = typer.Option(4096, min=1, help="Largest batch of the optimisation profile."),
):
    """Build TensorRT engines (model.plan) from the exported ONNX; needs a CUDA GPU."""
    from lob.export.trt import build_engines

    for path in build_engines(repo, precisions=_symbols(precision) or [], max_batch=max_batch):
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
