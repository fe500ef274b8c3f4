"""deploy/: the Kubernetes manifests, the Envoy bootstrap and the nginx config, checked statically (no
cluster, no Envoy here): parsed, cross-referenced with each other and with the code they deploy."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lobclient
from lob.serving.launcher import PROFILES

yaml = pytest.importorskip("yaml", reason="pyyaml is the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def load_all(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, path
    return docs


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def objects(kustomization) -> dict[tuple[str, str], dict]:
    """Every object kustomize would apply, by (kind, name)."""
    out = {}
    for name in kustomization["resources"]:
        if (K8S / name).is_dir():  # another kustomization (deploy/prometheus, deploy/grafana): its generators
            continue
        for doc in load_all(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), (name, doc)
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in out, f"{key} defined twice"
            out[key] = doc
    return out


@pytest.fixture(scope="module")
def envoy(kustomization) -> dict:
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "lob-envoy"]
    (entry,) = generator["files"]
    key, path = entry.split("=")
    assert key == "envoy.yaml"
    return yaml.safe_load((K8S / path).read_text())


def triton(objects) -> dict:
    return objects[("Deployment", "lob-triton")]["spec"]["template"]


def container(pod: dict, name: str) -> dict:
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == name]
    return c


def port(c: dict, name: str) -> int:
    (p,) = [p["containerPort"] for p in c["ports"] if p["name"] == name]
    return p


def test_every_yaml_under_deploy_parses_and_every_resource_is_listed(kustomization):
    files = sorted(p.relative_to(K8S).as_posix() for p in K8S.rglob("*.yaml"))
    for f in files:
        load_all(K8S / f)
    listed = {*(r for r in kustomization["resources"] if not (K8S / r).is_dir()), "kustomization.yaml",
              "envoy/envoy.yaml", "istio-destinationrule.yaml"}
    assert set(files) == listed, "a manifest that kustomization.yaml does not apply (or a missing one)"


def test_triton_replicas_run_the_ngc_based_image_on_a_gpu_with_the_repository_volume(objects, kustomization):
    pod = triton(objects)
    c = container(pod, "tritonserver")
    (image,) = [i for i in kustomization["images"] if i["name"] == c["image"]]
    assert image["newName"].endswith("/mamba-lob-triton")
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:24\.10-py3$", dockerfile, re.M)  # = server 2.51.0
    assert "-t mamba-lob-triton" in dockerfile  # the name the kustomization retags
    profile = c["args"][0]
    assert profile in PROFILES and PROFILES[profile].gpu
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    args = dict(a.lstrip("-").split("=") for a in c["args"][1:])
    assert {k: int(v) for k, v in args.items()} == {
        "http-port": port(c, "http"), "grpc-port": port(c, "grpc"), "metrics-port": port(c, "metrics")}
    env = {e["name"]: e["value"] for e in c["env"]}
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == env["MODEL_REPOSITORY"]]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert "ReadOnlyMany" in objects[("PersistentVolumeClaim", claim)]["spec"]["accessModes"]
    assert objects[("Deployment", "lob-triton")]["spec"]["replicas"] >= 2


def test_triton_probes_and_prometheus_annotations(objects):
    pod = triton(objects)
    c = container(pod, "tritonserver")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/v2/health/ready" and get["port"] in ("http", port(c, "http")), probe
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == port(c, "metrics") == 8002
    assert notes["prometheus.io/path"] == "/metrics"


def test_envoy_ring_hashes_the_shard_header_over_the_headless_triton_service(envoy, objects, kustomization):
    (listener,) = envoy["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    cfg = hcm["typed_config"]
    assert cfg["@type"].endswith("http_connection_manager.v3.HttpConnectionManager")
    assert cfg["codec_type"] == "HTTP2" and cfg["stream_idle_timeout"] == "0s"
    assert cfg["http_filters"][-1]["name"] == "envoy.filters.http.router"
    routes = [r for vh in cfg["route_config"]["virtual_hosts"] for r in vh["routes"]]
    assert routes and all(r["route"]["timeout"] == "0s" for r in routes)
    # the method the client calls is routed (ModelStreamInfer of inference.GRPCInferenceService)
    from tritonclient.grpc import service_pb2

    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert "ModelStreamInfer" in service.methods_by_name
    assert any(f"/{service.full_name}/ModelStreamInfer".startswith(r["match"]["prefix"]) for r in routes)
    for r in routes:
        assert [h["header"]["header_name"] for h in r["route"]["hash_policy"]] == [lobclient.SHARD_HEADER]
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    (cluster,) = {r["route"]["cluster"] for r in routes}
    c = clusters[cluster]
    assert c["lb_policy"] == "RING_HASH" and c["type"] == "STRICT_DNS"
    options = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]  # gRPC to the replicas
    (endpoint,) = [e["endpoint"] for group in c["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
    service = objects[("Service", "lob-triton")]
    assert service["spec"]["clusterIP"] == "None"  # DNS gives every replica, not one virtual IP
    assert endpoint["address"]["socket_address"]["address"] == (
        f"{service['metadata']['name']}.{kustomization['namespace']}.svc.cluster.local")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    pod_container = container(triton(objects), "tritonserver")
    assert endpoint["address"]["socket_address"]["port_value"] == ports["grpc"] == port(pod_container, "grpc")
    assert endpoint["health_check_config"]["port_value"] == ports["http"] == port(pod_container, "http")
    (check,) = c["health_checks"]
    assert check["http_health_check"]["path"] == "/v2/health/ready"
    assert check["http_health_check"]["codec_client_type"] == "HTTP1"  # Triton's HTTP port is HTTP/1.1
    assert service["spec"]["selector"].items() <= triton(objects)["metadata"]["labels"].items()


def test_envoy_deployment_mounts_its_config_and_the_grpc_service_reaches_its_listener(envoy, objects):
    pod = objects[("Deployment", "lob-envoy")]["spec"]["template"]
    c = container(pod, "envoy")
    (mount,) = c["volumeMounts"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "lob-envoy"
    assert c["args"][c["args"].index("-c") + 1] == f"{mount['mountPath']}/envoy.yaml"
    (listener,) = envoy["static_resources"]["listeners"]
    (svc_port,) = objects[("Service", "lob-grpc")]["spec"]["ports"]
    assert port(c, svc_port["targetPort"]) == listener["address"]["socket_address"]["port_value"]
    assert port(c, "admin") == envoy["admin"]["address"]["socket_address"]["port_value"]
    assert objects[("Service", "lob-grpc")]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_istio_alternative_hashes_the_same_header():
    (rule,) = load_all(K8S / "istio-destinationrule.yaml")
    assert rule["kind"] == "DestinationRule"
    assert rule["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpHeaderName"] == lobclient.SHARD_HEADER


def test_nginx_config_hashes_the_shard_header_consistently():
    conf = (ROOT / "deploy" / "nginx" / "lob-shards.conf").read_text()
    header = lobclient.SHARD_HEADER.replace("-", "_")
    assert re.search(rf"^\s*hash \$http_{header} consistent;", conf, re.M)
    assert re.search(r"^\s*grpc_pass grpc://lob_triton;", conf, re.M)


def test_capacity_doc_state_bytes_per_sequence_are_what_the_model_allocates():
    """bench/capacity.md's table: each preset's state bytes = the conv + ssm state one sequence holds."""
    import torch  # noqa: F401  (the model)

    from lob.models.mamba import PRESETS, MambaLOB
    from lob.models.registry import config_from_preset

    doc = (ROOT / "bench" / "capacity.md").read_text()
    (row,) = [line for line in doc.splitlines() if line.startswith("| state per sequence, FP32 |")]
    stated = {name: int(n.replace(",", "")) for name, n in re.findall(r"(\w+) ([\d,]+) B", row)}
    assert set(stated) == set(PRESETS)
    for name in PRESETS:
        conv, ssm = MambaLOB(config_from_preset("mamba", name, 1000, 12)).allocate_inference_cache(1)
        assert conv.dtype == ssm.dtype == torch.float32
        assert stated[name] == conv.nbytes + ssm.nbytes, name


# --- the signal sidecar (signal.yaml) and its Redis (redis.yaml) ---


def pod_of(objects, kind: str, name: str) -> dict:
    return objects[(kind, name)]["spec"]["template"]


def env_of(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def expand(value: str, env: dict[str, str]) -> str:
    """$(NAME) in command/args, as the kubelet expands it from the container's env (unknown names stay)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def signal_container(objects) -> dict:
    return container(pod_of(objects, "Deployment", "lob-signal"), "signal")


def signal_params(objects) -> dict:
    """The sidecar's args parsed by the click command behind `lob signal`: a flag the CLI does not have (or a
    value it rejects: --ttl below its minimum, a missing --redis) fails here, as it would in the pod."""
    import typer

    from lob.cli import app

    c = signal_container(objects)
    args = [expand(a, env_of(c)) for a in c["args"]]
    command = typer.main.get_command(app)
    return command.commands["signal"].make_context("signal", args, resilient_parsing=False).params


def service_for(objects, host_port: str, kustomization) -> tuple[dict, dict]:
    """host:port of a Service's cluster DNS name -> (the Service, its port entry)."""
    host, port_s = host_port.rsplit(":", 1)
    name, ns, svc, cluster, local = host.split(".")
    assert (svc, cluster, local) == ("svc", "cluster", "local"), host
    (namespace,) = [d for d in load_all(K8S / "namespace.yaml") if d["kind"] == "Namespace"]
    assert ns == kustomization["namespace"] == namespace["metadata"]["name"], host
    service = objects[("Service", name)]
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == int(port_s)]
    return service, entry


def workloads(objects) -> dict[tuple[str, str], dict]:
    return {k: v for k, v in objects.items() if k[0] in ("Deployment", "StatefulSet")}


def selected_pod(objects, service: dict) -> dict:
    """The one workload pod template the Service's selector matches."""
    (pod,) = [w["spec"]["template"] for w in workloads(objects).values()
              if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
    return pod


def target_container_port(pod: dict, entry: dict) -> int:
    target = entry.get("targetPort", entry["port"])
    for c in pod["spec"]["containers"]:
        for p in c.get("ports", []):
            if target in (p["name"], p["containerPort"]):
                return p["containerPort"]
    raise AssertionError(f"no container port {target!r}")


def test_every_workload_selects_its_own_pods_and_every_service_exactly_one_workload(objects, kustomization):
    for (kind, name), w in workloads(objects).items():
        assert w["spec"]["selector"]["matchLabels"].items() <= w["spec"]["template"]["metadata"]["labels"].items(), name
    for (kind, name), s in objects.items():
        if kind == "Service":
            selected_pod(objects, s)
        # one namespace: kustomize sets it; a hard-coded other one would be overridden or be a typo
        assert s["metadata"].get("namespace", kustomization["namespace"]) == kustomization["namespace"], name


def test_signal_sidecar_args_are_flags_of_lob_signal_reading_the_feed_on_stdin(objects):
    params = signal_params(objects)
    assert params["stdin"] is True and params["data"] is None  # exactly one input: the live feed
    c = signal_container(objects)
    shell, flag, script, _name = c["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    # exec: SIGTERM reaches lob signal (which deletes its heartbeat); a shell left in between would ignore it
    assert re.fullmatch(r'exec lob signal "\$@" < "\$LOB_FEED"', script), script


def test_signal_sidecar_streams_through_envoy_and_writes_to_the_redis_service(objects, kustomization):
    params = signal_params(objects)
    service, entry = service_for(objects, params["url"], kustomization)
    pod = selected_pod(objects, service)
    # the proxy, not the headless lob-triton: only Envoy ring-hashes x-lob-shard to the replica of a shard
    assert pod is pod_of(objects, "Deployment", "lob-envoy"), service["metadata"]["name"]
    assert target_container_port(pod, entry) == port(container(pod, "envoy"), "grpc")
    from urllib.parse import urlparse

    url = urlparse(params["redis"])
    assert url.scheme == "redis" and url.path == "/0", params["redis"]
    service, entry = service_for(objects, url.netloc, kustomization)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    pod = selected_pod(objects, service)
    assert pod is pod_of(objects, "StatefulSet", "lob-redis")
    assert target_container_port(pod, entry) == port(container(pod, "redis"), "redis")
    assert objects[("StatefulSet", "lob-redis")]["spec"]["serviceName"] == service["metadata"]["name"]


def test_signal_sidecar_model_and_shards_fit_the_replicas(objects):
    params = signal_params(objects)
    profile = triton(objects)["spec"]["containers"][0]["args"][0]
    assert params["model"] in PROFILES[profile].models, (params["model"], profile)  # else every tick is refused
    assert params["shards"] >= objects[("Deployment", "lob-triton")]["spec"]["replicas"]  # else idle replicas


def test_signal_sidecar_is_the_one_heartbeat_writer(objects):
    spec = objects[("Deployment", "lob-signal")]["spec"]
    # one heartbeat key per prefix: two sidecars (or a rolling update's old pod deleting it on SIGTERM while
    # the new one writes) would both feed and both claim it
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"


def test_signal_feed_is_a_named_pipe_shared_by_the_feed_and_the_sidecar(objects):
    pod = pod_of(objects, "Deployment", "lob-signal")
    (init,) = pod["spec"]["initContainers"]
    feed, sidecar = container(pod, "feed"), container(pod, "signal")
    path = env_of(sidecar)["LOB_FEED"]
    assert env_of(init)["LOB_FEED"] == env_of(feed)["LOB_FEED"] == path
    assert "mkfifo" in init["command"][-1] and "$LOB_FEED" in init["command"][-1]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = []
    for c in (init, feed, sidecar):
        (m,) = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
        mounts.append(m["name"])
    (name,) = set(mounts)
    assert "emptyDir" in volumes[name]


class FakeRedis:
    """What RedisSink and the probe use of redis-py: get, set(px=), delete, a transaction pipeline."""

    def __init__(self):
        self.data: dict[str, bytes] = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value, px=None):
        self.data[key] = value.encode() if isinstance(value, str) else value

    def delete(self, key):
        self.data.pop(key, None)

    def pipeline(self, transaction=True):
        calls, redis = [], self

        class Pipe:
            def __getattr__(self, name):
                return lambda *a, **k: calls.append((name, a, k))

            def execute(self):
                return [getattr(redis, name)(*a, **k) for name, a, k in calls]

        return Pipe()


@pytest.fixture
def fake_redis(monkeypatch):
    redis = pytest.importorskip("redis")
    fake, opened = FakeRedis(), []

    def from_url(cls, url, **kwargs):
        opened.append((url, kwargs))
        return fake

    monkeypatch.setattr(redis.Redis, "from_url", classmethod(from_url))
    return fake, opened


def run_probe(probe: dict, env: dict[str, str], monkeypatch) -> int:
    python, flag, code = probe["exec"]["command"]
    assert (python, flag) == ("python", "-c")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        exec(compile(code, "<probe>", "exec"), {"__name__": "__main__"})
    except SystemExit as end:
        return 0 if not end.code else 1
    return 0


def test_signal_liveness_follows_the_heartbeat_the_sidecar_writes(objects, fake_redis, monkeypatch):
    import json

    fake, opened = fake_redis
    c = signal_container(objects)
    params = signal_params(objects)
    assert c["startupProbe"]["exec"] == c["livenessProbe"]["exec"]
    probe, env = c["livenessProbe"], env_of(c)
    sink = lobclient.RedisSink(params["redis"], prefix=params["prefix"], ttl_s=params["ttl"])
    assert run_probe(probe, env, monkeypatch) == 1  # no heartbeat yet
    sink.beat()
    assert run_probe(probe, env, monkeypatch) == 0
    assert {url for url, _ in opened} == {params["redis"]}  # the probe asks the Redis the sidecar writes to
    key = f"{params['prefix']}:heartbeat"
    beat = json.loads(fake.data[key])
    fake.data[key] = json.dumps({**beat, "host": "another-pod"}).encode()
    assert run_probe(probe, env, monkeypatch) == 1  # someone else's heartbeat does not keep this pod alive
    sink.beat()
    sink.stop()  # any stop deletes it
    assert run_probe(probe, env, monkeypatch) == 1


def test_signal_probe_timing_against_the_ttl_and_the_redis_timeouts(objects, fake_redis):
    _, opened = fake_redis
    c = signal_container(objects)
    ttl = signal_params(objects)["ttl"]
    live = c["livenessProbe"]
    # a restart re-warms every symbol: the heartbeat must have been missing longer than one whole TTL (so a
    # single slow refresh, readers neutral for a moment, does not restart a sidecar that recovers)
    assert (live["failureThreshold"] - 1) * live["periodSeconds"] >= ttl
    lobclient.SignalReader("redis://x:6379/0")
    (_, kwargs), = opened
    # the probe's Redis round trip may take connect + read timeouts before it answers: not a probe timeout
    for probe in (c["startupProbe"], live):
        assert probe["timeoutSeconds"] > kwargs["socket_connect_timeout"] + kwargs["socket_timeout"]
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # time for the feed to open the pipe


def test_redis_is_a_latest_value_cache_with_ping_probes(objects):
    pod = pod_of(objects, "StatefulSet", "lob-redis")
    assert objects[("StatefulSet", "lob-redis")]["spec"]["replicas"] == 1
    c = container(pod, "redis")
    args = c["args"]
    assert args[0] == "redis-server"
    opts = dict(zip(args[1::2], args[2::2]))
    assert opts["--save"] == "" and opts["--appendonly"] == "no"  # no persistence (redis.yaml says why)
    assert int(opts["--port"]) == port(c, "redis")
    for probe in ("readinessProbe", "livenessProbe"):
        command = c[probe]["exec"]["command"]
        assert command[0] == "redis-cli" and command[-1] == "ping", command
        flags = dict(zip(command[1:-1:2], command[2:-1:2]))
        assert set(flags) <= {"-p", "-h"} and int(flags.get("-p", 6379)) == port(c, "redis"), command


def test_signal_and_redis_pods_run_restricted(objects, kustomization):
    images = {i["name"] for i in kustomization["images"]}
    dockerfile = (ROOT / "docker" / "Dockerfile.signal").read_text()
    assert "-t mamba-lob-signal" in dockerfile and '"./client[redis]"' in dockerfile  # lobclient + redis-py
    (user,) = re.findall(r"^USER (\d+)$", dockerfile, re.M)
    for kind, name in (("Deployment", "lob-signal"), ("StatefulSet", "lob-redis")):
        pod = pod_of(objects, kind, name)
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) & set(c["resources"]["limits"]), c["name"]
            if kind == "Deployment":
                assert c["image"] in images, c["image"]  # retagged by the kustomization
        if kind == "Deployment":
            assert pod["spec"]["securityContext"]["runAsUser"] == int(user)


# --- monitoring: the rules and the dashboard as ConfigMaps, the targets Prometheus scrapes ---


def generated_configmap(folder: str) -> tuple[dict, list[Path]]:
    """(the one ConfigMap generator of deploy/<folder>/kustomization.yaml, the files it packs)."""
    root = ROOT / "deploy" / folder
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    (generator,) = kust["configMapGenerator"]
    assert kust["generatorOptions"]["disableNameSuffixHash"] is True  # mounted by name from outside
    return generator, [root / f for f in generator["files"]]


def test_k8s_applies_the_tested_rules_and_dashboard_as_configmaps(kustomization):
    assert {"../prometheus", "../grafana"} <= set(kustomization["resources"])
    rules, (rules_file,) = generated_configmap("prometheus")
    assert rules["name"] == "lob-prometheus-rules" and rules_file.name == "lob.rules.yml"
    tested = yaml.safe_load((rules_file.parent / "lob.rules_test.yml").read_text())["rule_files"]
    served = yaml.safe_load((rules_file.parent / "prometheus.yml").read_text())["rule_files"]
    assert tested == served == [rules_file.name]  # the file promtool tests is the file shipped
    dashboard, (dashboard_file,) = generated_configmap("grafana")
    assert dashboard["options"]["labels"]["grafana_dashboard"] == "1"  # the Grafana chart sidecar's label
    assert dashboard_file == ROOT / "deploy" / "grafana" / "lob.json" and json.loads(dashboard_file.read_text())["panels"]


def test_prometheus_jobs_are_the_workloads_it_scrapes_on_their_annotated_ports(objects):
    """prometheus.yml's job names are what the alerts select on (up{job=...}); on Kubernetes `job` comes from
    the pods' app.kubernetes.io/name label (prometheus.yml's relabel note), so the two must agree."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    annotated = {}  # app.kubernetes.io/name -> the port Prometheus scrapes
    for (kind, name), w in workloads(objects).items():
        pod = w["spec"]["template"]
        notes = pod["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") == "true":
            port = int(notes["prometheus.io/port"])
            assert port in [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]
            annotated[pod["metadata"]["labels"]["app.kubernetes.io/name"]] = port
    assert jobs == {"lob-triton", "lob-signal"} and jobs <= set(annotated)  # (Envoy is scraped too: its own job)
    assert signal_params(objects)["metrics_port"] == annotated["lob-signal"]


def test_containers_start_triton_with_the_grpc_state_pool_of_the_launcher(objects):
    """Compose and Kubernetes run the image's lob-entrypoint unchanged, whose tritonserver line carries the launcher's
    --grpc-infer-allocation-pool-size (the gRPC streaming crash workaround, docs/serving.md) and no later
    argument lowers it."""
    import subprocess
    import sys

    from lob.serving.launcher import GRPC_STATE_POOL

    entry = (ROOT / "docker" / "entrypoint.sh").read_text()
    (assign,) = re.findall(r'^pool=\$\((python3 -c "[^"]+")\)$', entry, re.M)
    code = re.fullmatch(r'python3 -c "([^"]+)"', assign).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == GRPC_STATE_POOL
    exec_line = re.search(r"^exec tritonserver .*?\"\$@\"$", entry, re.M | re.S).group(0)
    assert '--grpc-infer-allocation-pool-size="$pool"' in exec_line
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/lob-entrypoint"\]$', (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())["services"]["triton"]
    k8s = container(triton(objects), "tritonserver")
    assert "entrypoint" not in compose and "command" not in k8s  # the image's lob-entrypoint runs
    for args in (compose["command"], k8s["args"]):
        assert not any(a.startswith("--grpc-infer-allocation-pool-size") for a in args), args
