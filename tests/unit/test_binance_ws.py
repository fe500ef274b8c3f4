"""The Binance websocket book builder on hand-made message sequences and on the shared recordings, and the
`lob import binance-ws` importer (multi-file sessions, gaps as session boundaries, errors by file and line)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lob.data.binance_ws import BookBuilder, BookError, import_binance_ws
from lob.data.schema import TickDataError, read_ticks

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance"
RECORDINGS = {s: SHARED / f"{s}-usdm-ws-2024-08-08.gz" for s in ("BTCUSDT", "ETHUSDT")}
needs_recordings = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/binance (the recorded sessions) is absent")


def snap(last: int, bids, asks) -> dict:
    return {"lastUpdateId": last, "E": 1, "T": 1, "bids": [[str(p), str(q)] for p, q in bids],
            "asks": [[str(p), str(q)] for p, q in asks]}


def diff(first: int, last: int, prev: int, b=(), a=()) -> dict:
    return {"stream": "x@depth", "data": {"e": "depthUpdate", "E": 5, "T": 5, "s": "X", "U": first, "u": last,
                                          "pu": prev, "b": [[str(p), str(q)] for p, q in b],
                                          "a": [[str(p), str(q)] for p, q in a]}}


def ticker(u: int, bid, bid_sz, ask, ask_sz) -> dict:
    return {"e": "bookTicker", "u": u, "s": "X", "b": str(bid), "B": str(bid_sz), "a": str(ask), "A": str(ask_sz)}


def trade(px, qty, maker: bool) -> dict:
    return {"e": "trade", "E": 7, "T": 7, "s": "X", "p": str(px), "q": str(qty), "m": maker}


BIDS = [(100.0 - k, 1.0 + k) for k in range(12)]  # 100, 99, ..., 89
ASKS = [(101.0 + k, 2.0 + k) for k in range(12)]  # 101, ..., 112


def feed(builder: BookBuilder, messages) -> list:
    out = []
    for i, m in enumerate(messages):
        out += builder.on_message(m, 1000 + i)
    return out


def test_futures_buffered_stale_first_and_chained_diffs():
    b = BookBuilder("usdm")
    ticks = feed(b, [diff(5, 9, 4, b=[(100.0, 50.0)]),  # u < lastUpdateId 10: dropped
                     diff(10, 12, 9, b=[(100.0, 7.0)]),  # U <= 10 <= u: the first applied
                     snap(10, BIDS, ASKS),
                     diff(13, 15, 12, a=[(101.0, 0.0)]),  # removes the best ask
                     diff(16, 16, 15, b=[(89.0, 3.0)]),  # only level 12 changes: no tick
                     diff(17, 20, 16, b=[(100.5, 4.0)])])  # a new best bid
    assert b.counts["diffs_stale"] == 1 and b.counts["diffs_applied"] == 4 and b.counts["diffs_below_top"] == 1
    assert [t.ts_ns for t in ticks] == [1001, 1003, 1005]  # buffered diffs keep their own time
    assert [t.session_start for t in ticks] == [True, False, False]
    assert ticks[0].bid_sz[0] == 7.0 and ticks[0].ask_px[0] == 101.0
    assert ticks[1].ask_px[:2].tolist() == [102.0, 103.0] and ticks[1].ask_sz[0] == 3.0
    assert ticks[2].bid_px[:3].tolist() == [100.5, 100.0, 99.0] and ticks[2].bid_sz[:2].tolist() == [4.0, 7.0]
    assert ticks[2].bid_px.shape == (10,) and b.last_u == 20


def test_futures_gap_drops_trades_until_a_new_snapshot_starts_a_session():
    b = BookBuilder("usdm")
    feed(b, [snap(10, BIDS, ASKS), diff(9, 11, 8)])
    assert b.synced
    assert feed(b, [diff(14, 15, 13, b=[(100.0, 9.0)])]) == []  # pu 13 != previous u 11: a gap
    assert b.counts["gaps"] == 1 and b.needs_snapshot
    assert feed(b, [trade(101.0, 0.5, False)]) == []  # buffered until the book is rebuilt
    again = feed(b, [snap(20, BIDS, ASKS), diff(18, 21, 17, b=[(100.0, 9.0)]), trade(100.0, 0.25, True),
                     diff(22, 22, 21, a=[(101.0, 9.0)])])
    # the diff that broke the chain is older than the new snapshot, and the trade after it met no book
    assert b.counts["diffs_stale"] == 1 and b.counts["trades_unsynced"] == 1 and b.counts["resyncs"] == 2
    assert [t.session_start for t in again] == [True, False, False]
    assert again[0].bid_sz[0] == 9.0 and again[2].ask_sz[0] == 9.0
    assert (again[1].trade_px, again[1].trade_sz, again[1].trade_side) == (100.0, 0.25, -1)  # buyer maker: a sell
    assert again[1].bid_sz[0] == 9.0 and again[1].ask_sz[0] == 2.0  # the trade carries the book as it stood


def test_spot_rules_differ_from_futures():
    spot, fut = BookBuilder("spot"), BookBuilder("usdm")
    sequence = [snap(10, BIDS, ASKS), diff(8, 10, 0, b=[(100.0, 5.0)]), diff(11, 12, 999, b=[(100.0, 6.0)])]
    s_ticks, f_ticks = feed(spot, sequence), feed(fut, sequence)
    # spot: u == lastUpdateId is stale, the first applied has U <= 11 <= u, then U == previous u + 1 (pu unused)
    assert spot.counts["diffs_stale"] == 1 and [t.bid_sz[0] for t in s_ticks] == [6.0] and spot.counts["gaps"] == 0
    # futures: the diff ending at lastUpdateId is the first applied; pu 999 != 10 breaks the chain
    assert [t.bid_sz[0] for t in f_ticks] == [5.0] and fut.counts["gaps"] == 1
    feed(spot, [diff(14, 15, 12)])  # U 14 != 13
    assert spot.counts["gaps"] == 1 and spot.needs_snapshot


def test_snapshot_older_than_the_stream_asks_for_another():
    b = BookBuilder("usdm")
    assert feed(b, [diff(20, 25, 19), snap(10, BIDS, ASKS)]) == []
    assert b.counts["snapshots_too_old"] == 1 and b.needs_snapshot and b.counts["gaps"] == 0
    assert feed(b, [snap(22, BIDS, ASKS)])[0].session_start  # the buffered diff applies to the newer one


def test_bookticker_checks_the_rebuilt_touch_at_the_same_update_id():
    b = BookBuilder("usdm")
    feed(b, [snap(10, BIDS, ASKS), diff(9, 11, 8, b=[(100.0, 5.0)]),
             ticker(11, 100.0, 5.0, 101.0, 2.0),  # after its diff: agrees
             ticker(13, 100.0, 5.0, 101.0, 2.0),  # before its diff (u 13), which changes the bid size: disagrees
             ticker(12, 100.0, 5.0, 101.0, 2.0),  # no diff ends at 12: not checked
             diff(12, 13, 11, b=[(100.0, 6.0)])])
    assert b.counts["touch_checked"] == 2 and b.counts["touch_mismatches"] == 1
    assert "update id 13" in b.mismatch_examples[0]
    assert b.counts["bookticker_ticks"] == 0  # the default makes ticks from diffs only


def test_touch_mode_overlays_a_fresher_bookticker():
    b = BookBuilder("usdm", ticks_from="touch")
    feed(b, [snap(10, BIDS, ASKS), diff(9, 11, 8)])
    (t,) = feed(b, [ticker(14, 99.5, 3.0, 101.0, 2.0)])  # the best bid (100) went, 99.5 came
    assert t.bid_px[:3].tolist() == [99.5, 99.0, 98.0] and t.bid_sz[0] == 3.0 and t.ask_px[1] == 102.0
    assert feed(b, [ticker(11, 100.0, 1.0, 101.0, 2.0)]) == []  # not newer than the book: no tick


def test_crossing_book_and_malformed_messages_are_refused():
    b = BookBuilder("usdm")
    feed(b, [snap(10, BIDS, ASKS), diff(9, 11, 8)])
    with pytest.raises(BookError, match="crosses"):
        feed(b, [diff(12, 12, 11, b=[(101.5, 1.0)])])
    assert b.needs_snapshot
    with pytest.raises(BookError, match="'u' missing"):
        BookBuilder().on_message({"e": "depthUpdate", "U": 1, "pu": 0}, 0)
    with pytest.raises(BookError, match="'m'"):
        BookBuilder().on_message({"e": "trade", "p": "1", "q": "1", "m": "yes"}, 0)


# ------------------------------------------------------------------------------------------- recordings

def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.readlines()


@needs_recordings
@pytest.mark.parametrize("symbol", sorted(RECORDINGS))
def test_recordings_rebuild_without_mismatch_or_loss(symbol, tmp_path):
    (path,) = import_binance_ws([RECORDINGS[symbol]], tmp_path)
    t = read_ticks(path)  # validated: never crossed or locked, time order
    c = t.meta["counts"]
    assert c["touch_checked"] > 500 and c["touch_mismatches"] == 0 and c["gaps"] == 0
    lines = _lines(RECORDINGS[symbol])
    msgs = [json.loads(line.split(" ", 1)[1]) for line in lines]
    last_id = next(m["lastUpdateId"] for m in msgs if "lastUpdateId" in m)
    synced = next(i for i, m in enumerate(msgs) if m.get("data", {}).get("e") == "depthUpdate"
                  and m["data"]["U"] <= last_id <= m["data"]["u"])  # the first diff applied to the snapshot
    trades_after = sum(m.get("data", {}).get("e") == "trade" for m in msgs[synced:])
    assert int((t.trade_side != 0).sum()) == trades_after  # every trade after the sync is a tick
    sides = {json.loads(line.split(" ", 1)[1])["data"]["m"] for line in lines if '"e":"trade"' in line}
    assert sides == {True, False} and set(np.unique(t.trade_side)) == {-1, 0, 1}
    assert t.symbol == symbol and t.meta["session_starts_ns"] == []


def _head(src: Path, n: int, out: Path, drop: set[int] = frozenset(), insert: dict | None = None) -> Path:
    lines = [line for i, line in enumerate(_lines(src)[:n]) if i not in drop]
    for at, line in sorted((insert or {}).items(), reverse=True):
        lines.insert(at, line)
    with gzip.open(out, "wt") as f:
        f.writelines(lines)
    return out


@needs_recordings
def test_session_split_over_files_imports_as_one(tmp_path):
    src = RECORDINGS["ETHUSDT"]
    whole = read_ticks(import_binance_ws([_head(src, 3000, tmp_path / "all.gz")], tmp_path / "one")[0])
    lines = _lines(src)[:3000]
    (tmp_path / "b.log").write_text("".join(lines[1700:]))  # plain text, no snapshot
    with gzip.open(tmp_path / "a.gz", "wt") as f:
        f.writelines(lines[:1700])
    split = read_ticks(import_binance_ws([tmp_path / "a.gz", tmp_path / "b.log"], tmp_path / "two")[0])
    assert len(whole) > 500 and len(split) == len(whole)
    np.testing.assert_array_equal(split.bid_px, whole.bid_px)
    np.testing.assert_array_equal(split.trade_side, whole.trade_side)
    with pytest.raises(TickDataError, match="no depth snapshot"):
        import_binance_ws([tmp_path / "b.log"], tmp_path / "three")
    assert not (tmp_path / "three").exists()


@needs_recordings
def test_gap_in_a_recording_is_a_session_boundary_for_labels(tmp_path):
    from lob.training.labels import IGNORE, tick_targets

    src = RECORDINGS["BTCUSDT"]
    lines = _lines(src)[:4000]
    diffs = [i for i, line in enumerate(lines) if '"e":"depthUpdate"' in line]
    lost, resume = diffs[150], diffs[170]
    ref = BookBuilder("usdm")  # the book as the recording stands just before `resume`: a later REST snapshot
    for i, line in enumerate(lines[:resume]):
        ref.on_message(json.loads(line.split(" ", 1)[1]), 0)
    stamp = lines[resume].split(" ", 1)[0]
    again = f"{stamp} {json.dumps(ref.snapshot())}\n"  # arrives just before line `resume` (one line is dropped)
    (path,) = import_binance_ws([_head(src, 4000, tmp_path / "gap.gz", drop={lost}, insert={resume - 1: again})],
                                tmp_path / "out")
    t = read_ticks(path)
    assert t.meta["counts"]["gaps"] == 1 and t.meta["counts"]["resyncs"] == 2
    (start,) = t.meta["session_starts_ns"]
    first = int(np.searchsorted(t.ts_ns, start))
    assert int(lines[lost].split(" ", 1)[0]) < start <= int(stamp) and 0 < first < len(t)
    labels, _ = tick_targets(t, fee_bps=0.0)
    assert (labels[first - 10:first, 0] == IGNORE).all()  # h = 10 ticks: no label looks across the gap
    assert (labels[first:first + 10, 0] != IGNORE).any()


def test_bad_files_are_named_by_file_and_line_and_nothing_is_written(tmp_path):
    head = [f"100 {json.dumps(snap(10, BIDS, ASKS))}\n", f"101 {json.dumps(diff(9, 11, 8))}\n",
            f"102 {json.dumps(trade(100.0, 1.0, False))}\n"]
    cases = {"json.log": (head + ["103 {not json\n"], r"json.log, row 4.*not JSON"),
             "crossed.log": (head + [f"103 {json.dumps(diff(12, 12, 11, a=[(99.5, 1.0)]))}\n"], r"crossed.log, row 4.*crosses"),
             "clock.log": (head + [f"99 {json.dumps(trade(100.0, 1.0, True))}\n"], r"clock.log, row 4.*backwards")}
    for name, (lines, pattern) in cases.items():
        (tmp_path / name).write_text("".join(lines))
        with pytest.raises(TickDataError, match=pattern):
            import_binance_ws([tmp_path / name], tmp_path / "out", symbol="X")
    good = gzip.compress("".join(head * 1).encode() * 50)
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(TickDataError, match=r"cut.gz, row \d+: unreadable"):
        import_binance_ws([tmp_path / "cut.gz"], tmp_path / "out", symbol="X")
    assert not (tmp_path / "out").exists()


def test_cli_import_names_the_bad_line(tmp_path):
    from typer.testing import CliRunner

    from lob.cli import app

    lines = [f"100 {json.dumps(snap(10, BIDS, ASKS))}\n", f"101 {json.dumps(diff(9, 11, 8))}\n",
             f"102 {json.dumps(diff(12, 13, 11, b=[(100.0, 2.0)]))}\n", f"103 {json.dumps(trade(101.0, 1.0, False))}\n"]
    (tmp_path / "ok.log").write_text("".join(lines))
    result = CliRunner().invoke(app, ["import", "binance-ws", str(tmp_path / "ok.log"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    t = read_ticks(tmp_path / "d" / "X" / "1970-01-01.parquet")
    assert t.meta["tick_size"] == 1.0 and t.trade_side.tolist() == [0, 0, 1] and t.ts_ns.tolist() == [101, 102, 103]
    (tmp_path / "bad.log").write_text("".join(lines[:2]) + "104 {\n")
    result = CliRunner().invoke(app, ["import", "binance-ws", str(tmp_path / "bad.log"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "bad.log, row 3: not JSON" in " ".join(result.output.split())


def test_session_starts_survive_day_concat_and_cut_labels():
    from lob.data.schema import Ticks
    from lob.training.labels import session_ids

    ts = np.arange(6, dtype=np.int64) * 10
    assert session_ids(ts, starts_ns=[25, 40, 99]).tolist() == [0, 0, 0, 1, 2, 2]  # 99: after the last tick
    empty = np.zeros((3, 10))
    day = lambda t, starts: Ticks(t, empty, empty, empty, empty, np.zeros(3), np.zeros(3), np.zeros(3, np.int8),  # noqa: E731
                                  "X", {"session_starts_ns": starts})
    assert Ticks.concat([day(ts[:3], [10]), day(ts[3:], [40])]).meta["session_starts_ns"] == [10, 40]
