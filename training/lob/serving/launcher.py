"""Start a real Triton Inference Server on a model repository: `lob serve` and the test fixtures.

The server is the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel (Triton 2.51.0, python backend
only) with the backend directory ``make backend`` builds (``build/triton_backends``: Triton's onnxruntime
backend compiled for CPU, and the python backend with the stub of the running Python), or an NGC
container's ``/opt/tritonserver`` when present (GPU profiles need its CUDA onnxruntime and tensorrt
backends). Models are loaded explicitly, per profile, with ``--disable-auto-complete-config``: the configs
in the repository are the whole truth. A profile may name a config (``--model-config-name``): models with
``configs/<name>.pbtxt`` load that one (e.g. ``KIND_GPU`` instances), the others their ``config.pbtxt``.
Hardened by default: the model-repository (load/unload) and shared-memory APIs of gRPC
and HTTP answer only requests carrying the admin key (HTTP header ``lob-admin-key``, gRPC metadata
``triton-grpc-protocol-lob-admin-key``); gRPC speaks TLS when
given a certificate and key (mutual TLS with a client CA).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lob.contract import STEP_MODEL, STREAM_MODELS, TOKENIZER_MODEL, TRT_STEP_MODELS, VERSION_MODEL

NGC_ROOT = Path("/opt/tritonserver")
# `make backend` (scripts/build_onnxruntime_backend.sh) lays it out; LOB_TRITON_BACKENDS overrides
BUILT_BACKENDS = Path(os.environ.get("LOB_TRITON_BACKENDS", Path(__file__).resolve().parents[3] / "build" / "triton_backends"))


@dataclass(frozen=True)
class Profile:
    models: tuple[str, ...]  # loaded in this order (composing models before their ensemble)
    backends: tuple[str, ...]  # Triton backends the models need
    gpu: bool = False
    config_name: str | None = None  # --model-config-name: configs/<name>.pbtxt where a model has one


PROFILES: dict[str, Profile] = {
    # one stateful step model (onnxruntime backend, implicit state) in every ONNX profile: its config.pbtxt
    # is KIND_CPU, its configs/gpu.pbtxt KIND_GPU; MODEL_VERSION is a constant output of its graph
    "cpu": Profile(models=(TOKENIZER_MODEL, STEP_MODEL, STREAM_MODELS["cpu"]), backends=("python", "onnxruntime")),
    "gpu-onnx": Profile(models=(TOKENIZER_MODEL, STEP_MODEL, STREAM_MODELS["onnx"]),
                        backends=("python", "onnxruntime"), gpu=True, config_name="gpu"),
    # TensorRT engines cannot emit a string: MODEL_VERSION from lob_model_version (a constant ONNX graph)
    "gpu-fp16": Profile(models=(TOKENIZER_MODEL, VERSION_MODEL, TRT_STEP_MODELS["fp16"], STREAM_MODELS["fp16"]),
                        backends=("python", "onnxruntime", "tensorrt"), gpu=True, config_name="gpu"),
    "gpu-bf16": Profile(models=(TOKENIZER_MODEL, VERSION_MODEL, TRT_STEP_MODELS["bf16"], STREAM_MODELS["bf16"]),
                        backends=("python", "onnxruntime", "tensorrt"), gpu=True, config_name="gpu"),
}


ADMIN_HEADER = "lob-admin-key"  # HTTP header a model-repository/shared-memory request must carry (value: the key)
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # the same over gRPC (Triton prefixes the name)
RESTRICTED_APIS = "model-repository,shared-memory"  # what a client without the key cannot call
# --grpc-infer-allocation-pool-size: how many released gRPC request States the frontend keeps for reuse
# (Triton's default: 8). Above the peak number of in-flight gRPC requests, no State is ever deleted, which
# defuses a use-after-free under gRPC streaming (docs/upstream/triton-grpc-stream-uaf.md). A cap, not an
# allocation: the pool holds at most the peak number of States alive at once (one per in-flight request,
# a few KB each with this contract's small tensors), kept instead of freed.
GRPC_STATE_POOL = 100_000


@dataclass(frozen=True)
class TLS:
    """gRPC TLS files (PEM): the server's certificate and key; ``ca`` set: clients must present a
    certificate signed by it (mutual TLS)."""
    cert: Path
    key: Path
    ca: Path | None = None

    def flags(self) -> list[str]:
        for f in (self.cert, self.key, self.ca):
            if f is not None and not Path(f).is_file():
                raise ServerError(f"{f}: no such TLS file")
        out = ["--grpc-use-ssl=true", f"--grpc-server-cert={Path(self.cert).resolve()}",
               f"--grpc-server-key={Path(self.key).resolve()}"]
        if self.ca is not None:
            out += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={Path(self.ca).resolve()}"]
        return out


class ServerError(RuntimeError):
    """The server could not be found, started, or did not become ready."""


def _wheel_root() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    root = Path(pytriton.__file__).parent / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def _server_root(profile: Profile) -> tuple[Path, Path | None]:
    """(folder holding ``bin/tritonserver``, its backend directory or None to assemble one) for ``profile``."""
    candidates = [r for r in (Path(os.environ["TRITON_ROOT"]) if "TRITON_ROOT" in os.environ else None,
                              NGC_ROOT, _wheel_root()) if r is not None and (r / "bin" / "tritonserver").is_file()]
    for root in candidates:
        if all((root / "backends" / b).is_dir() for b in profile.backends):
            return root, None
        if root == _wheel_root() and not profile.gpu and all((BUILT_BACKENDS / b).is_dir() for b in profile.backends):
            return root, BUILT_BACKENDS
    have = ", ".join(f"{r} ({', '.join(sorted(p.name for p in (r / 'backends').iterdir()))})" for r in candidates)
    raise ServerError(
        f"no tritonserver with the {', '.join(profile.backends)} backend(s) found; have: {have or 'none'}"
        f"{'' if profile.gpu else f', and {BUILT_BACKENDS} has no ' + ', '.join(profile.backends)}. "
        + ("GPU profiles need the NGC server (nvcr.io/nvidia/tritonserver:24.10-py3, or TRITON_ROOT=<its "
           "/opt/tritonserver>) and a CUDA GPU; the nvidia-pytriton wheel ships the python backend only."
           if profile.gpu else "Build the onnxruntime backend for the wheel's server: `make backend` "
           "(scripts/build_onnxruntime_backend.sh); the serve extra must be installed (make venv)."))


def _backend_dir(root: Path, profile: Profile, into: Path) -> Path:
    """A backend directory for ``root``: its backends, the python one with the stub of this Python."""
    for name in profile.backends:
        src, dst = root / "backends" / name, into / name
        if name != "python" or (src / "triton_python_backend_stub").is_file():
            dst.symlink_to(src, target_is_directory=True)
            continue
        stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"{stub}: missing; this tritonserver has no python backend stub for Python "
                              f"{sys.version_info.major}.{sys.version_info.minor}")
        dst.mkdir()
        for f in (*src.glob("*.so"), *src.glob("*.py"), stub):
            shutil.copy2(f, dst / f.name)
    return into


class TritonServer:
    """A running ``tritonserver`` on ``repo``; a context manager (start on enter, stop on exit).

    ``url`` is the gRPC endpoint (``localhost:<grpc_port>``). ``extra_models`` are loaded after the
    profile's. The server log goes to ``log_file``. ``admin_key`` (default: random, see ``.admin_key``)
    unlocks the model-repository and shared-memory APIs; ``tls`` makes gRPC speak TLS. On stop, Triton
    waits ``exit_timeout_s`` for in-flight requests (its default, 30 s, also waits on sequences that clients
    abandoned without END, which never finish) before it exits. ``grpc_state_pool``: the gRPC frontend's
    State pool (``GRPC_STATE_POOL``; None: Triton's default of 8, which crashes under gRPC streaming, kept
    only for the crash trials' control runs).
    """

    def __init__(self, repo: Path, profile: str = "cpu", grpc_port: int = 8001, http_port: int = 8000,
                 metrics_port: int = 8002, log_file: Path = Path("out/tritonserver.log"),
                 ready_timeout_s: float = 120.0, extra_models: tuple[str, ...] = (),
                 admin_key: str | None = None, tls: TLS | None = None, exit_timeout_s: int = 5,
                 grpc_state_pool: int | None = GRPC_STATE_POOL):
        if profile not in PROFILES:
            raise ServerError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        self.repo, self.profile = Path(repo).resolve(), PROFILES[profile]
        self.ports = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.log_file, self.ready_timeout_s = Path(log_file), ready_timeout_s
        self.models = (*self.profile.models, *extra_models)
        self.url = f"localhost:{grpc_port}"
        self.admin_key = admin_key or secrets.token_urlsafe(24)
        if not all(c.isalnum() or c in "-_" for c in self.admin_key):
            raise ServerError("admin key: letters, digits, '-' and '_' only")
        self.tls, self.exit_timeout_s, self.grpc_state_pool = tls, exit_timeout_s, grpc_state_pool
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def start(self) -> "TritonServer":
        if self.profile.gpu and not _has_gpu():
            raise ServerError("this profile needs a CUDA GPU and none is visible (nvidia-smi); use --profile cpu")
        busy = [f"{kind} {port}" for kind, port in self.ports.items() if not _port_free(port)]
        if busy:  # else readiness could be answered by whatever holds the port
            raise ServerError(f"port(s) in use: {', '.join(busy)}; pick others (--grpc-port/--http-port/--metrics-port)")
        root, backends = _server_root(self.profile)
        if backends is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lob-triton-")
            backends = _backend_dir(root, self.profile, Path(self._tmp.name))
        cmd = [str(root / "bin" / "tritonserver"), f"--model-repository={self.repo}",
               f"--backend-directory={backends}", "--model-control-mode=explicit",
               *(f"--load-model={m}" for m in self.models), "--disable-auto-complete-config",
               f"--grpc-port={self.ports['grpc']}", f"--http-port={self.ports['http']}",
               # summary_latencies: p50/p99 request, queue and compute time per model on /metrics
               # (nv_inference_*_summary_us, last 60 s: `lob top`, deploy/grafana/lob.json)
               f"--metrics-port={self.ports['metrics']}", "--metrics-config=summary_latencies=true",
               "--exit-on-error=true",
               f"--exit-timeout-secs={self.exit_timeout_s}",
               *([f"--grpc-infer-allocation-pool-size={self.grpc_state_pool}"] if self.grpc_state_pool is not None else []),
               *([f"--model-config-name={self.profile.config_name}"] if self.profile.config_name else []),
               f"--grpc-restricted-protocol={RESTRICTED_APIS}:{ADMIN_HEADER}={self.admin_key}",
               f"--http-restricted-api={RESTRICTED_APIS}:{ADMIN_HEADER}={self.admin_key}",
               *(self.tls.flags() if self.tls is not None else [])]
        env = dict(os.environ)
        # The stub embeds the Python it was built for; the venv first on PATH makes it import this
        # environment's packages (numpy<2, lob, onnxruntime).
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        libs = root.parent.parent / "nvidia_pytriton.libs"  # the wheel's bundled shared libraries
        if libs.is_dir():
            env["LD_LIBRARY_PATH"] = f"{libs}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)  # Ctrl-C in a terminal reaches us, not it
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        # over HTTP (plaintext, health API unrestricted): works whatever the gRPC TLS settings
        import urllib.request

        base = f"http://127.0.0.1:{self.ports['http']}/v2"
        urls = [f"{base}/health/ready", *(f"{base}/models/{m}/ready" for m in self.models)]
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self._proc.returncode} while starting; "
                                  f"log {self.log_file}:\n{_tail(self.log_file)}")
            try:
                if all(urllib.request.urlopen(u, timeout=2).status == 200 for u in urls):
                    return
            except OSError:  # not listening yet, or not ready (HTTP 400)
                pass
            time.sleep(0.2)
        raise ServerError(f"tritonserver not ready after {self.ready_timeout_s:g} s; log {self.log_file}:\n"
                          f"{_tail(self.log_file)}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (Triton drains in-flight requests and unloads models), SIGKILL after ``timeout_s``."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:  # python backend stubs outlive a server killed with SIGKILL: end its group
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)  # the server leads its own session (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the fault tests kill -9 it)."""
        return None if self._proc is None else self._proc.pid

    def returncode(self) -> int | None:
        """The server's exit code once it has exited, else None."""
        return None if self._proc is None else self._proc.poll()

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a past server is no conflict
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def serve_forever(repo: Path, profile: str = "cpu", grpc_port: int = 8001, http_port: int = 8000,
                  metrics_port: int = 8002, log_file: Path = Path("out/tritonserver.log"),
                  admin_key: str | None = None, tls: TLS | None = None, grpc_state_pool: int = GRPC_STATE_POOL) -> None:
    """Run the server until SIGINT/SIGTERM, then stop it cleanly. Exits non-zero if it dies."""
    from rich.console import Console

    console = Console(stderr=True)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    try:
        server = TritonServer(repo, profile, grpc_port, http_port, metrics_port, log_file, admin_key=admin_key, tls=tls,
                              grpc_state_pool=grpc_state_pool)
        server.start()
    except ServerError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise SystemExit(2)
    console.print(f"tritonserver ready: gRPC {server.url}{' (TLS)' if tls else ''}, HTTP :{http_port}, metrics "
                  f":{metrics_port}; models {', '.join(server.models)}; log {log_file}. Model load/unload and "
                  f"shared memory need gRPC header {GRPC_ADMIN_HEADER} / HTTP header {ADMIN_HEADER}" + ("" if admin_key else " (random key: locked)")
                  + ". Ctrl-C stops it.")
    try:
        while not stop and server.returncode() is None:
            time.sleep(0.2)
        if not stop:
            console.print(f"[bold red]error:[/] tritonserver exited with code {server.returncode()}; "
                          f"log {log_file}:\n{_tail(log_file)}")
            raise SystemExit(1)
    finally:
        server.stop()
    console.print("tritonserver stopped.")
