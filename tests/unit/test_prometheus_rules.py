"""deploy/prometheus with the real promtool (Debian's prometheus package; `make test` installs it): the config
and rules load, and lob.rules_test.yml passes, with a firing and a quiet case for every alert and a value
check for every recording rule. The dashboard's static shape (deploy/grafana/lob.json, importable as is)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed and `make test` could not install it (apt-get install -y prometheus "
                    "needs root)")
    return path


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)


def test_config_and_rules_load(promtool):
    out = run(promtool, "check", "config", "prometheus.yml")  # checks the rule files it names too
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "lob.rules.yml" in out.stdout


def test_every_alert_fires_and_stays_quiet_and_every_recording_rule_is_checked(promtool):
    rules = [r for g in yaml.safe_load((PROM / "lob.rules.yml").read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((PROM / "lob.rules_test.yml").read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    alerts = [r["alert"] for r in rules if "alert" in r]
    assert len(alerts) >= 8
    for alert in alerts:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"
    checked = {c["expr"] for t in tests for c in t.get("promql_expr_test", [])}
    assert {r["record"] for r in rules if "record" in r} <= checked
    for r in rules:
        if "alert" in r:
            assert r["labels"]["severity"] in ("warning", "critical") and {"summary", "description"} <= set(r["annotations"])
    out = run(promtool, "test", "rules", "lob.rules_test.yml")
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_dashboard_is_importable_json_over_one_prometheus_datasource():
    dash = json.loads((ROOT / "deploy" / "grafana" / "lob.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert dash["uid"] and len(ids) == len(set(ids)) >= 9
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"] for t in p["targets"]), p["title"]
