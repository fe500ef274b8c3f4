"""deploy/: the Kubernetes manifests, the Envoy bootstrap and the nginx config, checked statically (no
cluster, no Envoy here): parsed, cross-referenced with each other and with the code they deploy."""
from __future__ import annotations

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
    listed = {*kustomization["resources"], "kustomization.yaml", "envoy/envoy.yaml", "istio-destinationrule.yaml"}
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


def test_readme_state_bytes_per_sequence_are_what_the_model_allocates():
    """The README's capacity table: each preset's state bytes = the conv + ssm state one sequence holds."""
    import torch  # noqa: F401  (the model)

    from lob.models.mamba import PRESETS, MambaLOB, config_from_preset

    readme = (ROOT / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| state per sequence, FP32 |")]
    stated = {name: int(n.replace(",", "")) for name, n in re.findall(r"(\w+) ([\d,]+) B", row)}
    assert set(stated) == set(PRESETS)
    for name in PRESETS:
        conv, ssm = MambaLOB(config_from_preset(name, 1000, 12)).allocate_inference_cache(1)
        assert conv.dtype == ssm.dtype == torch.float32
        assert stated[name] == conv.nbytes + ssm.nbytes, name
