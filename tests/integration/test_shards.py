"""Symbol-affine routing: 3 real tritonserver replicas behind a real nginx (deploy/nginx/lob-shards.conf),
`lobclient.stream(..., transport=Transport(shards=S))`; the replicas' own statistics say where every symbol went."""
from __future__ import annotations

import os
import signal
import threading
from collections import defaultdict
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port
from .services import Nginx

pytestmark = [pytest.mark.server, pytest.mark.slow]

N_SYMBOLS, SHARDS, N_REPLICAS = 64, 16, 3
TOL = 1e-4


@pytest.fixture(scope="module")
def desk(dataset_dir):
    """64 symbols: slices of the 4 simulated ones, renamed, 16-24 ticks each (lengths differ, so a symbol's
    ticks counted on the wrong replica would show)."""
    base = load_dataset(dataset_dir)
    names = sorted(base)
    desk = {}
    for j in range(N_SYMBOLS):
        start, n = 20 * (j // len(names)), 16 + j % 9
        desk[f"S{j:02d}"] = replace(base[names[j % len(names)]].slice(start, start + n), symbol=f"S{j:02d}")
    return desk


@pytest.fixture(scope="module")
def reference(desk, run_dir):
    """Offline scoring (`lob predict`'s functions) of each symbol from a fresh state: {symbol: (n, 3, 3)}."""
    from lob.evaluation.predict import score_sequence
    from lob.training.run import load_run

    model, tokenizer, _ = load_run(run_dir)
    out = {}
    for symbol, ticks in desk.items():
        tokens, features, _ = tokenizer.transform(ticks)
        out[symbol] = score_sequence(model, tokens, features)[0]
    return out


@pytest.fixture(scope="module")
def replicas(repo, tmp_path_factory):
    from lob.serving.launcher import TritonServer

    logs = tmp_path_factory.mktemp("replicas")
    ports: list[int] = []
    while len(ports) < 3 * N_REPLICAS:  # distinct: the servers start at the same time
        if (p := free_port()) not in ports:
            ports.append(p)
    servers = [TritonServer(repo, "cpu", grpc_port=ports[3 * i], http_port=ports[3 * i + 1],
                            metrics_port=ports[3 * i + 2], log_file=logs / f"replica{i}.log",
                            ready_timeout_s=300)  # 3 at once on 2 loaded cores
               for i in range(N_REPLICAS)]
    errors = []

    def start(srv):
        try:
            srv.start()
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="module")
def proxy(replicas, tmp_path_factory):
    addrs = [f"127.0.0.1:{s.ports['grpc']}" for s in replicas]
    with Nginx(tmp_path_factory.mktemp("nginx"), free_port(), addrs) as nginx:
        yield nginx


def addr(srv) -> str:
    return f"127.0.0.1:{srv.ports['grpc']}"


def stream_counts(replicas) -> dict[str, int]:
    """Successful lob_stream inferences so far, per replica address (the replica's own statistics)."""
    import tritonclient.grpc as grpcclient

    out = {}
    for srv in replicas:
        if srv.returncode() is None:
            stats = grpcclient.InferenceServerClient(srv.url).get_inference_statistics("lob_stream", as_json=True)
            out[addr(srv)] = int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))
    return out


def shard_routes(proxy, since: int, at_least: int = SHARDS) -> dict[str, set[str]]:
    """{x-lob-shard: replicas that answered its streams} for the streams nginx logged from line ``since``
    (at least ``at_least`` of them: a sharded stream opens one per shard, empty ones included)."""
    assert proxy.wait_logged(since, at_least), f"nginx logged {proxy.log_lines() - since} streams, want {at_least}"
    routes = defaultdict(set)
    for header, tried, status in proxy.routes(since):
        assert header != "-", "a stream reached nginx without the x-lob-shard header"
        routes[header].add(tried[-1])  # earlier ones refused the connection; the last one served it
    return routes


def symbols_of(desk) -> dict[str, list[str]]:
    by_shard = defaultdict(list)
    for s in desk:
        by_shard[str(lobclient.shard(s, SHARDS))].append(s)
    return by_shard


def assert_matches(preds, reference, symbol):
    served = np.stack([p.dir_probs for p in preds])
    assert np.abs(served - reference[symbol][[p.seq for p in preds]]).max() <= TOL, symbol


def test_symbols_stay_on_one_replica_and_match_offline(desk, reference, replicas, proxy):
    ticks = list(interleave(desk))
    before, log_from = stream_counts(replicas), proxy.log_lines()
    preds = list(lobclient.stream(ticks, url=proxy.url, transport=lobclient.Transport(shards=SHARDS, window=256)))
    after = stream_counts(replicas)

    assert [(p.symbol, p.ts_ns) for p in preds] == [(t.symbol, t.ts_ns) for t in ticks]
    assert [p.error for p in preds if p.error] == []
    by_symbol = defaultdict(list)
    for p in preds:
        by_symbol[p.symbol].append(p)
    for symbol, mine in by_symbol.items():
        assert [p.seq for p in mine] == list(range(len(desk[symbol])))
        assert_matches(mine, reference, symbol)  # one unbroken state per symbol: one replica held it

    # nginx: every shard's stream went to exactly one replica, and the shards spread over the replicas
    # (the ring depends on the replicas' random ports: 16 shards leave one of 3 without any ~0.5% of runs)
    routes = shard_routes(proxy, log_from)
    by_shard = symbols_of(desk)
    assert set(by_shard) <= set(routes)
    assert all(len(r) == 1 for r in routes.values()), routes
    used = {next(iter(routes[h])) for h in by_shard}
    assert used <= set(after) and len(used) >= 2, f"shards reached {used}, replicas are {set(after)}"
    # each replica's own count: exactly the ticks (+ 1 END each) of the symbols on the shards nginx sent it
    expected = {a: 0 for a in after}
    for header, symbols in by_shard.items():
        expected[next(iter(routes[header]))] += sum(len(desk[s]) + 1 for s in symbols)
    assert {a: after[a] - before[a] for a in after} == dict(expected)


@pytest.fixture(scope="module")
def killed(desk, replicas, proxy):
    """kill -9 of the replica holding the most symbols, a third into a sharded stream of all 64 symbols.
    Module scope, requested only by the last tests of this module: it leaves that replica dead."""
    # where nginx sends each shard now: a short probe stream (one tick per symbol)
    probe_from = proxy.log_lines()
    list(lobclient.stream([next(interleave({s: t.slice(0, 1)})) for s, t in desk.items()], url=proxy.url,
                          transport=lobclient.Transport(shards=SHARDS)))
    home = {h: next(iter(r)) for h, r in shard_routes(proxy, probe_from).items()}
    by_shard = symbols_of(desk)
    victim = max(replicas, key=lambda s: sum(len(by_shard[h]) for h, a in home.items() if a == addr(s)))
    moved = {s for h, a in home.items() if a == addr(victim) for s in by_shard[h]}
    assert moved and len(moved) < N_SYMBOLS

    ticks = list(interleave(desk))
    # a re-warming client (issue 9) keeps a ring of `rewarm_ticks` per symbol: larger than any symbol's
    # ticks here, so a moved symbol's replay is its whole history and its predictions must equal offline
    log_from = proxy.log_lines()
    preds, killed_at = [], None
    for p in lobclient.stream(ticks, url=proxy.url, transport=lobclient.Transport(shards=SHARDS, window=64),
                              recovery=lobclient.Recovery(rewarm_ticks=64)):
        preds.append(p)
        if killed_at is None and len(preds) == len(ticks) // 3:
            os.killpg(victim._proc.pid, signal.SIGKILL)  # the server and its python stubs, as a pod dies
            killed_at = len(preds)
    victim._proc.wait(10)
    # a moved shard's stream is logged twice or more (broken, then reopened by a reconnecting client)
    moved_shards = sum(1 for a in home.values() if a == addr(victim))
    proxy.wait_logged(log_from, SHARDS + moved_shards, timeout_s=5.0)  # this branch's client does not reopen
    by_symbol = defaultdict(list)
    for p in preds:
        by_symbol[p.symbol].append(p)
    return SimpleNamespace(ticks=ticks, preds=preds, by_symbol=by_symbol, killed_at=killed_at, victim=victim,
                           moved=moved, home=home, routes=shard_routes(proxy, log_from),
                           survivors={addr(s) for s in replicas if s is not victim})


def test_replica_killed_mid_stream_every_tick_answered_and_other_replicas_symbols_untouched(killed, desk, reference):
    """What the sharded client guarantees by itself: the broken shards do not stall or disturb the others."""
    assert killed.victim.returncode() == -signal.SIGKILL
    assert killed.killed_at is not None and killed.killed_at < len(killed.ticks)
    assert any(p.symbol in killed.moved for p in killed.preds[killed.killed_at:]), "no moved tick after the kill"
    assert [(p.symbol, p.ts_ns) for p in killed.preds] == [(t.symbol, t.ts_ns) for t in killed.ticks]
    for symbol, mine in killed.by_symbol.items():
        assert [p.seq for p in mine] == list(range(len(desk[symbol])))
        if symbol not in killed.moved:
            assert all(p.ok for p in mine), (symbol, [(p.seq, p.error) for p in mine if p.error])
            assert_matches(mine, reference, symbol)
    failed = [p for p in killed.preds if p.error]
    assert all(p.symbol in killed.moved and p.error.strip() for p in failed)
    for header, served_by in killed.routes.items():  # the shards of the survivors never moved
        if header in killed.home and killed.home[header] != addr(killed.victim):
            assert served_by == {killed.home[header]}, (header, served_by)


def test_replica_killed_mid_stream_moved_symbols_rewarmed_on_one_survivor_each_nothing_lost(killed, reference):
    """nginx moves the dead replica's shards; the client reconnects, re-warms each moved symbol on its new
    replica (replaying its ticks into a fresh sequence) and re-sends what was in flight: nothing lost."""
    assert [(p.symbol, p.seq, p.error) for p in killed.preds if p.error] == []
    for symbol in killed.moved:
        # re-warm replays all of a moved symbol's ticks (<= 24, under any re-warm ring): the same state
        assert_matches(killed.by_symbol[symbol], reference, symbol)
    for header, served_by in killed.routes.items():
        if killed.home.get(header) == addr(killed.victim):
            new = served_by - {addr(killed.victim)}
            assert len(new) == 1 and new <= killed.survivors, (header, served_by)
