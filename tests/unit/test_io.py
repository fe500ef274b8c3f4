"""Artifact I/O (lob.io): files and folders are whole or absent; the one predictions table."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lob.io import atomic_write, building, write_predictions

# the predictions table as docs/architecture.md and docs/serving.md document it
COLUMNS = ["symbol", "ts_ns", "seq",
           "p_down_h10", "p_flat_h10", "p_up_h10", "p_down_h50", "p_flat_h50", "p_up_h50",
           "p_down_h100", "p_flat_h100", "p_up_h100", "next_token_top1", "next_token_top1_p"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and path.read_text() == "old"


def test_building_replaces_only_when_forced_and_a_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "repo"
    with building(out, force=False) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError, match="--force"):
        with building(out, force=False):
            pass
    with pytest.raises(RuntimeError):
        with building(out, force=True) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("export failed")
    assert (out / "a").read_text() == "1"
    with building(out, force=True) as tmp:
        (tmp / "b").write_text("3")
    assert [p.name for p in out.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temp siblings left


def test_predictions_table_columns_values_and_types(tmp_path):
    n = 4
    dir_probs = np.arange(n * 3 * 3, dtype=np.float32).reshape(n, 3, 3)  # (N, horizon, class): all distinct
    path = write_predictions(tmp_path / "p.parquet", ["A", "A", "B", "B"], np.arange(n) + 10**18,
                             [0, 1, 0, 1], dir_probs, [5, 6, 7, 8], [0.5, 0.25, 0.125, 1.0])
    table = pq.read_table(path)
    assert table.column_names == COLUMNS
    assert table.column("p_up_h50").to_pylist() == dir_probs[:, 1, 2].tolist()
    assert table.column("p_down_h100").to_pylist() == dir_probs[:, 2, 0].tolist()
    assert table.column("symbol").to_pylist() == ["A", "A", "B", "B"]
    types = {f.name: f.type for f in table.schema}
    assert types["symbol"] == pa.string() and types["ts_ns"] == types["seq"] == types["next_token_top1"] == pa.int64()
    assert {types[c] for c in COLUMNS[3:-2]} == {pa.float32()} and types["next_token_top1_p"] == pa.float32()


def test_predictions_of_another_shape_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"p\.parquet: dir_probs has shape \(2, 2, 3\)"):
        write_predictions(tmp_path / "p.parquet", ["A", "A"], [1, 2], [0, 1], np.zeros((2, 2, 3)), [0, 0], [1.0, 1.0])
    assert list(tmp_path.iterdir()) == []
