"""Real nginx, redis-server and prometheus processes for the scale-out and monitoring tests: own config in a
temp dir, free ports, foreground (``daemon off`` / ``--daemonize no``) under subprocess, stopped by process id.

The binaries come from Debian (``make test`` installs them with apt when missing and it may); a test
needing one skips with the reason only when it is absent.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
NGINX_CONF = PROJECT / "deploy" / "nginx" / "lob-shards.conf"


def find_binary(name: str) -> str:
    """Path of ``name`` (also in the sbin folders a non-root PATH lacks), or skip the test saying why."""
    path = shutil.which(name) or next((p for d in ("/usr/sbin", "/usr/local/sbin", "/sbin")
                                       if os.access(p := f"{d}/{name}", os.X_OK)), None)
    if path is None:
        package = {"promtool": "prometheus"}.get(name, name)  # the Debian package that ships it
        pytest.skip(f"{name} is not installed and `make test` could not install it "
                    f"(apt-get install -y {package} needs root)")
    return path


def wait_listening(port: int, proc: subprocess.Popen, what: str, log: Path, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; log {log}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout_s:g} s; log {log}:\n{_tail(log)}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Service:
    """Start/stop plumbing of the processes below: ``start()`` sets ``_proc``; ``stop()`` sends ``stop_signal``
    to that process id (SIGKILL after 10 s); a context manager (start on enter, stop on exit)."""
    stop_signal = signal.SIGTERM
    _proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, self.stop_signal)
            self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Nginx(_Service):
    """nginx running the project's ``deploy/nginx/lob-shards.conf`` on ``port`` in front of ``replicas``
    (``host:grpc_port``). The access log records, per gRPC stream, its ``x-lob-shard`` header and the
    replica(s) nginx sent it to (``routes()``)."""
    stop_signal = signal.SIGQUIT  # graceful: finish open streams, then exit

    def __init__(self, workdir: Path, port: int, replicas: list[str]):
        self.dir, self.port, self.url = Path(workdir), port, f"127.0.0.1:{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.access_log, self.error_log = self.dir / "access.log", self.dir / "error.log"
        site = NGINX_CONF.read_text()
        assert "listen 8001 http2;" in site, f"{NGINX_CONF}: the tests set the port of `listen 8001 http2;`"
        (self.dir / "lob-shards.conf").write_text(site.replace("listen 8001 http2;", f"listen 127.0.0.1:{port} http2;"))
        (self.dir / "lob-replicas.conf").write_text(
            "".join(f"server {r} max_fails=1 fail_timeout=30s;\n" for r in replicas))
        temp = "".join(f"{k}_temp_path {self.dir / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.dir / "nginx.conf").write_text(f"""daemon off;
worker_processes 1;
pid {self.dir / 'nginx.pid'};
error_log {self.error_log} info;
events {{ worker_connections 1024; }}
http {{
    log_format shards '$http_x_lob_shard|$upstream_addr|$status';
    access_log {self.access_log} shards;
    {temp}
    include lob-shards.conf;
}}
""")
        self.binary = find_binary("nginx")

    def start(self) -> "Nginx":
        cmd = [self.binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.error_log)]
        test = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
        assert test.returncode == 0, f"nginx -t refused the config:\n{test.stderr}"
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, self._proc, "nginx", self.error_log)
        return self


    def routes(self, since: int = 0) -> list[tuple[str, list[str], str]]:
        """(shard header, replicas tried in order, HTTP status) per finished stream, from log line ``since``."""
        lines = self.access_log.read_text().splitlines()[since:] if self.access_log.exists() else []
        out = []
        for line in lines:
            header, upstreams, status = line.split("|")
            out.append((header, [a.strip() for a in upstreams.split(",") if a.strip() not in ("", "-")], status))
        return out

    def wait_logged(self, since: int, n: int, timeout_s: float = 10.0) -> bool:
        """Wait until at least ``n`` streams are logged from line ``since``: nginx logs a stream when it has
        finished it, which can be a moment after the client saw its end. False if they never come."""
        deadline = time.monotonic() + timeout_s
        while self.log_lines() - since < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_lines(self) -> int:
        return len(self.access_log.read_text().splitlines()) if self.access_log.exists() else 0



class RedisServer(_Service):
    """redis-server on 127.0.0.1:``port``, no persistence, its files in ``workdir``."""

    def __init__(self, workdir: Path, port: int):
        self.dir, self.port = Path(workdir), port
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = self.dir / "redis.log"
        self.binary = find_binary("redis-server")

    def start(self) -> "RedisServer":
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.log)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, self._proc, "redis-server", self.log)
        return self



class Prometheus(_Service):
    """A real Prometheus on 127.0.0.1:``port`` running ``config`` (a prometheus.yml as a dict) with the rule
    files ``rules`` ({file name: rules dict}) beside it; its TSDB in ``workdir``. ``query``/``alerts`` use its
    HTTP API (/api/v1)."""

    def __init__(self, workdir: Path, port: int, config: dict, rules: dict[str, dict]):
        import yaml

        self.dir, self.port = Path(workdir), port
        self.dir.mkdir(parents=True, exist_ok=True)
        self.api, self.log = f"http://127.0.0.1:{port}/api/v1", self.dir / "prometheus.log"
        for name, doc in rules.items():
            (self.dir / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.binary = find_binary("prometheus")

    def start(self) -> "Prometheus":
        cmd = [self.binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
               f"--web.listen-address=127.0.0.1:{self.port}"]
        self._proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, self._proc, "prometheus", self.log)
        deadline = time.monotonic() + 15
        while not self._ready():  # listening comes before the TSDB and rules are loaded
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"prometheus not ready; log {self.log}:\n{_tail(self.log)}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:  # 503 until ready
            return False

    def _get(self, path: str, **params) -> object:
        import json
        import urllib.parse
        import urllib.request

        url = f"{self.api}/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector of ``expr`` now: [{"metric": {labels}, "value": [t, "v"]}, ...]."""
        data = self._get("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing): [{"labels", "annotations", "state", ...}, ...]."""
        return self._get("alerts")["alerts"]

