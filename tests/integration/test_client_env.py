"""lobclient in the environment a quant already has: its wheel installed into .venv-client beside the newest
numpy 2, tritonclient, protobuf and grpcio (`make client-venv`), streaming to the Triton 2.51 server this
environment starts (numpy<2). The client side runs there through `client_driver.py`; the server, the reference
(this environment's lobclient) and the assertions run here. The client's own tests (`CLIENT_TESTS`) run there
with its pytest; the direct path (`tokenizer=`) tokenizes there with the wheel's `lobtick`, `lob` not importable.

``make test`` sets ``LOB_CLIENT_PYTHON`` (that venv's python): a missing venv fails there; a bare ``pytest``
without .venv-client skips this module with the command that builds it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("client_driver.py")
N_TICKS = 120  # per symbol, 4 symbols (the session dataset)
KILL_AT = 240  # input index of the tick before which the server is killed (~60 ticks into each symbol)
REWARM = 32  # < ticks per symbol at the kill: the re-warmed state is approximate
CLIENT_TESTS = ("tests/unit/test_lobclient_mux.py", "tests/integration/test_client.py")


@pytest.fixture(scope="module")
def client_python() -> Path:
    path = os.environ.get("LOB_CLIENT_PYTHON")
    if path is None:
        path = ROOT / ".venv-client" / "bin" / "python"
        if not path.exists():
            pytest.skip("no .venv-client: `make client-venv` builds it (`make test` does)")
    assert Path(path).exists(), f"LOB_CLIENT_PYTHON={path} does not exist"
    return Path(path).absolute()  # not resolve(): the venv's python is a symlink out of the venv


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this tree on its path


@pytest.fixture(scope="module")
def client_versions(client_python) -> dict:
    out = subprocess.run([str(client_python), str(DRIVER), "--versions"], capture_output=True, text=True,
                         check=True, env=_env(), timeout=60).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def ticks(dataset_dir) -> list[lobclient.Tick]:
    feed = list(interleave({s: t.slice(0, N_TICKS) for s, t in load_dataset(dataset_dir).items()}))
    assert len({t.symbol for t in feed}) == 4 and len(feed) == 4 * N_TICKS
    return feed


def _save_ticks(ticks, path: Path) -> Path:
    np.savez(path, symbol=np.array([t.symbol for t in ticks]), ts_ns=np.array([t.ts_ns for t in ticks], np.int64),
             **{f: np.stack([getattr(t, f) for t in ticks]) for f in ("bid_px", "bid_sz", "ask_px", "ask_sz")},
             trade_px=np.array([t.trade_px for t in ticks]), trade_sz=np.array([t.trade_sz for t in ticks]),
             trade_side=np.array([t.trade_side for t in ticks], np.int8))
    return path


def _driver(client_python, ticks, tmp_path, **options) -> subprocess.Popen:
    (tmp_path / "options.json").write_text(json.dumps(options))
    return subprocess.Popen([str(client_python), str(DRIVER), str(_save_ticks(ticks, tmp_path / "ticks.npz")),
                             str(tmp_path / "out.npz"), str(tmp_path / "options.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _finish(proc: subprocess.Popen, tmp_path) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return dict(np.load(tmp_path / "out.npz"))


def _as_arrays(preds) -> dict:
    """This environment's predictions in the driver's OUT.npz form."""
    preds = list(preds)
    return {"symbol": np.array([p.symbol for p in preds]), "seq": np.array([p.seq for p in preds]),
            "ts_ns": np.array([p.ts_ns for p in preds]), "ok": np.array([p.ok for p in preds]),
            "dir_probs": np.stack([p.dir_probs for p in preds]), "topk_ids": np.stack([p.topk_ids for p in preds]),
            "topk_probs": np.stack([p.topk_probs for p in preds])}


def _same_order(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in ("symbol", "seq", "ts_ns"))


def test_the_client_env_holds_the_wheel_beside_numpy_2_and_todays_tritonclient(client_versions, client_python):
    from importlib.metadata import version

    v = client_versions
    print("\nmain environment:", {d: version(d) for d in ("numpy", "tritonclient", "protobuf", "grpcio")},
          "\n.venv-client:", v)
    assert Version(v["numpy"]).major >= 2 and Version(np.__version__).major == 1  # numpy<2: the server side
    assert Version(v["tritonclient"]) > Version(version("tritonclient")) == Version("2.51.0")
    assert Version(v["protobuf"]).major >= 5  # tritonclient 2.51 caps protobuf below 5
    assert not v["lob_importable"]  # only the client: nothing of the server
    installed = Path(v["lobclient_dir"])  # the wheel's copy, not this tree's (non-editable)
    assert installed.is_relative_to(client_python.parent.parent) and "site-packages" in installed.parts
    assert (installed / "py.typed").is_file()  # package data made it into the wheel
    assert Path(v["lobtick_dir"]) == installed.parent / "lobtick"  # the tokenizer came with the wheel
    assert (installed.parent / "lobtick" / "py.typed").is_file()
    assert v["lobclient"] == v["lobclient.__version__"] == lobclient.__version__
    assert Path(lobclient.__file__).parent != installed


def test_a_users_type_checker_sees_tick_and_prediction(client_python, tmp_path):
    (tmp_path / "user.py").write_text(
        "import lobclient\n\n\ndef f(t: lobclient.Tick) -> None:\n    a: int = t\n"
        "    for p in lobclient.stream([t]):\n        b: int = p\n")
    proc = subprocess.run([str(client_python), "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                           "user.py"], cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=300)
    # without py.typed, mypy skips lobclient ("missing library stubs or py.typed marker") and reports neither
    assert 'user.py:5: error: Incompatible types in assignment (expression has type "Tick"' in proc.stdout, proc.stdout
    assert 'user.py:7: error: Incompatible types in assignment (expression has type "Prediction"' in proc.stdout
    assert "Found 2 errors in 1 file" in proc.stdout


def test_the_clients_own_tests_pass_in_the_client_env(client_python):
    # --noconftest: tests/unit/conftest.py imports torch; test_client.py imports free_port from its conftest itself
    proc = subprocess.run([str(client_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
                           *CLIENT_TESTS],
                          cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    n_tests = sum(len(re.findall(r"^def test_", (ROOT / f).read_text(), re.M)) for f in CLIENT_TESTS)
    summary = proc.stdout.strip().splitlines()[-1]
    assert n_tests > 0 and re.match(rf"{n_tests} passed in ", summary), summary


def test_several_symbols_streamed_from_the_client_env_equal_this_envs_client(server, client_python, ticks, tmp_path):
    transport = dict(kind="stream", window=16)
    proc = _driver(client_python, ticks, tmp_path, url=server.url, transport=transport)
    theirs = _finish(proc, tmp_path)
    ours = _as_arrays(lobclient.stream(ticks, url=server.url, transport=lobclient.Transport(**transport)))
    assert ours["ok"].all() and theirs["ok"].all(), theirs["error"][~theirs["ok"]][:2]
    assert _same_order(theirs, ours) and len(ours["seq"]) == len(ticks)
    np.testing.assert_array_equal(theirs["topk_ids"], ours["topk_ids"])
    np.testing.assert_allclose(theirs["dir_probs"], ours["dir_probs"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(theirs["topk_probs"], ours["topk_probs"], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tls_kill_server(repo, pki, tmp_path_factory):
    """A mutual-TLS server of this module's own (the kill test kills it)."""
    from lob.serving.launcher import TLS, TritonServer

    log = tmp_path_factory.mktemp("client-env-server") / "tritonserver.log"
    with TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                      log_file=log, tls=TLS(pki / "server.pem", pki / "server.key", ca=pki / "ca.pem")) as srv:
        yield srv


@pytest.mark.slow
def test_kill_9_mid_stream_over_mutual_tls_every_tick_answered_in_order(tls_kill_server, pki, client_python, ticks,
                                                                          tmp_path):
    srv = tls_kill_server
    tls = dict(root_certificates=str(pki / "ca.pem"), private_key=str(pki / "client.key"),
               certificate_chain=str(pki / "client.pem"))
    transport = dict(kind="stream", window=64, timeout_s=30)
    recovery = dict(rewarm_ticks=REWARM, reconnect_deadline_s=240)
    reference = _as_arrays(lobclient.stream(ticks, url=srv.url, tls=lobclient.TLS(**tls),
                                            transport=lobclient.Transport(**transport),
                                            recovery=lobclient.Recovery(**recovery)))
    assert reference["ok"].all()

    proc = _driver(client_python, ticks, tmp_path, url=srv.url, tls=tls, transport=transport, recovery=recovery,
                   pause_at=KILL_AT)
    assert proc.stdout.readline().strip() == "PAUSED", proc.stderr.read()[-3000:]
    os.kill(srv.pid, signal.SIGKILL)
    restarted = threading.Event()

    def restart():
        srv.stop()  # reaps the killed process
        srv.start()  # same ports, same certificates
        restarted.set()

    threading.Thread(target=restart, daemon=True).start()
    proc.stdin.write("\n")
    proc.stdin.flush()
    preds = _finish(proc, tmp_path)
    assert restarted.is_set(), "the stream ended before the server was back"

    assert _same_order(preds, reference)  # one prediction per tick, in input order: nothing lost
    failed = ~preds["ok"]
    assert all("in flight when the connection broke" in e for e in preds["error"][failed]), preds["error"][failed][:3]
    assert failed.sum() <= 4  # at most one in flight per symbol at the kill
    before = preds["ok"] & (np.arange(len(ticks)) < KILL_AT - 64)  # answered before the kill (window 64)
    assert before.sum() >= KILL_AT - 64
    np.testing.assert_allclose(preds["dir_probs"][before], reference["dir_probs"][before], rtol=0, atol=1e-6)
    after = preds["ok"] & (np.arange(len(ticks)) >= KILL_AT)  # sent to the restarted server, re-warmed
    assert after.sum() >= len(ticks) - KILL_AT - 4 and preds["warm"][after].all()
    dp = np.abs(preds["dir_probs"][after] - reference["dir_probs"][after]).max()
    print(f"\n.venv-client across a kill -9: {failed.sum()} in flight failed, max |dp| of {after.sum()} re-warmed "
          f"predictions {dp:.2e}")
    assert 0 < dp <= 0.05  # a re-warm happened (state approximate) and stays close, as in test_faults


def test_the_direct_path_tokenizes_in_the_client_env_without_the_server_package(server, repo, client_python,
                                                                              client_versions, ticks, tmp_path):
    """tokenizer= in .venv-client (no `lob` there): the wheel's lobtick tokenizes, and the step model answers
    as it does to this environment's direct path (tokenized here by lob.tokenizer, the same lobtick)."""
    assert not client_versions["lob_importable"]
    tokenizer = repo / "lob_tokenizer" / "1" / "tokenizer.json"
    proc = _driver(client_python, ticks, tmp_path, url=server.url, tokenizer=str(tokenizer))
    theirs = _finish(proc, tmp_path)  # the driver fails if `lob` got imported
    ours = _as_arrays(lobclient.stream(ticks, url=server.url, tokenizer=str(tokenizer)))
    assert ours["ok"].all() and theirs["ok"].all(), theirs["error"][~theirs["ok"]][:2]
    assert _same_order(theirs, ours) and len(ours["seq"]) == len(ticks)
    np.testing.assert_array_equal(theirs["topk_ids"], ours["topk_ids"])
    np.testing.assert_allclose(theirs["dir_probs"], ours["dir_probs"], rtol=0, atol=1e-6)
