"""KubeRay manifests (`raybake job-config --format kuberay` / `kuberay-cluster`)
against KubeRay's own CRD schemas (tests/data/kuberay: release v1.7.0), Ray's
own runtime_env parser and unzip, and a real Ray head running the RayJob's
submit command the way KubeRay's submitter pod does."""

from __future__ import annotations

import copy
import functools
import http.server
import json
import re
import shlex
import shutil
import threading
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE
from helpers import docker, raybake
from jsonschema import Draft4Validator, ValidationError

from raybake.contract import LABEL_INPUT_HASH, LABEL_PYTHON

CRDS = Path(__file__).parent / "data" / "kuberay"
URI = "https://example.com/ray-app/wd-0123.zip"
EXAMPLE_RAY = next(p["version"] for p in tomllib.loads((EXAMPLE / "uv.lock").read_text())["package"]
                   if p["name"] == "ray")


def strict(schema):
    """The schema with Kubernetes' strict field validation (`kubectl apply
    --validate=strict`): a field the schema does not know is an error, where
    the API server would otherwise drop it silently."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd(kind: str) -> tuple[str, Draft4Validator]:
    """(apiVersion, validator of the whole object) for a KubeRay kind.

    An OpenAPI v3.0 schema is JSON Schema draft 4 with extensions, which
    draft-4 validation ignores (x-kubernetes-*: CEL rules are not checked)."""
    doc = yaml.safe_load((CRDS / f"ray.io_{kind.lower()}s.yaml").read_text())
    assert doc["spec"]["names"]["kind"] == kind
    (version,) = [v for v in doc["spec"]["versions"] if v["storage"]]
    schema = strict(version["schema"]["openAPIV3Schema"])
    Draft4Validator.check_schema(schema)
    return f"{doc['spec']['group']}/{version['name']}", Draft4Validator(schema)


def validate(manifest: dict) -> None:
    api_version, validator = crd(manifest["kind"])
    assert manifest["apiVersion"] == api_version
    validator.validate(manifest)


DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def check_operator_rules(manifest: dict) -> None:
    """What KubeRay's operator checks beyond the schema
    (ray-operator/controllers/ray/utils/validation.go, v1.7.0) and raybake relies on."""
    name, kind = manifest["metadata"]["name"], manifest["kind"]
    assert len(name) <= {"RayJob": 47, "RayCluster": 53}[kind] and DNS_1035.fullmatch(name), name
    cluster = manifest["spec"]["rayClusterSpec"] if kind == "RayJob" else manifest["spec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    for group in cluster["workerGroupSpecs"]:
        assert DNS_1123.fullmatch(group["groupName"]) and len(group["groupName"]) <= 63
        # No autoscaler: both bounds are required, and replicas within them.
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["template"]["spec"]["containers"]
    for key, value in manifest["metadata"].get("labels", {}).items():
        assert re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key)
        assert len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value)


def input_hash(root: Path, env: dict[str, str]) -> str:
    from raybake.planner import identities_for
    from raybake.project import load_project

    (plan,) = identities_for(load_project(root), environ=env)
    return plan.input_hash.hexdigest


def containers(manifest: dict) -> list[dict]:
    cluster = manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kuberay") / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    return root


@pytest.fixture(scope="module")
def rayjob(example, tmp_path_factory) -> tuple[dict, str]:
    """The example's RayJob and the reference of its image."""
    tag = raybake("tag", "-C", str(example)).stdout.strip()
    out = raybake("job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
                  "--working-dir-uri", URI, "--stage-dir", str(tmp_path_factory.mktemp("wd") / "wd")).stdout
    return yaml.safe_load(out), tag


def test_rayjob_matches_the_kuberay_crd(rayjob):
    manifest, tag = rayjob
    validate(manifest)
    check_operator_rules(manifest)
    spec = manifest["spec"]
    assert manifest["kind"] == "RayJob" and manifest["metadata"]["name"] == "ray-app-default"
    assert spec["entrypoint"] == "/opt/venv/bin/python main.py"
    assert spec["rayClusterSpec"]["rayVersion"] == EXAMPLE_RAY
    # Head, workers and (by KubeRay's default, the head's image) the submitter run the image.
    assert [c["image"] for c in containers(manifest)] == [tag, tag]
    assert spec["metadata"] == {"raybake.image": tag, "raybake.spec": "default"}
    assert spec["shutdownAfterJobFinishes"] is True


def test_runtime_env_yaml_carries_the_working_dir_uri_and_is_a_ray_runtime_env(rayjob):
    from ray.runtime_env import RuntimeEnv

    text = rayjob[0]["spec"]["runtimeEnvYAML"]
    env = yaml.safe_load(text)
    assert env == {"working_dir": URI, "env_vars": {"PYTHONPATH": "src"},
                   "config": {"setup_timeout_seconds": 600}}
    RuntimeEnv(**env)  # Ray's own parser accepts it (a local path or a bad URI would not pass on the cluster)


def test_raycluster_matches_the_kuberay_crd(example):
    tag = raybake("tag", "-C", str(example)).stdout.strip()
    manifest = yaml.safe_load(raybake("job-config", "-C", str(example), "--format", "kuberay-cluster").stdout)
    validate(manifest)
    check_operator_rules(manifest)
    assert manifest["kind"] == "RayCluster" and manifest["metadata"]["name"] == "ray-app-default"
    assert manifest["spec"]["rayVersion"] == EXAMPLE_RAY
    assert [c["image"] for c in containers(manifest)] == [tag, tag]


def _move(doc: dict, source: tuple, target: tuple) -> dict:
    doc = copy.deepcopy(doc)
    *parent, key = source
    holder = functools.reduce(lambda d, k: d[k], parent, doc)
    value = holder.pop(key)
    *parent, key = target
    functools.reduce(lambda d, k: d[k], parent, doc)[key] = value
    return doc


HEAD = ("spec", "rayClusterSpec", "headGroupSpec")
HEAD_CONTAINER = (*HEAD, "template", "spec", "containers", 0)
WORKERS = ("spec", "rayClusterSpec", "workerGroupSpecs", 0)


@pytest.mark.parametrize(("source", "target"), [
    (("spec", "rayClusterSpec", "rayVersion"), ("spec", "rayVersion")),
    (("spec", "runtimeEnvYAML"), ("spec", "rayClusterSpec", "runtimeEnvYAML")),
    ((*HEAD_CONTAINER, "image"), (*HEAD, "template", "spec", "image")),
    ((*WORKERS, "replicas"), (*WORKERS, "template", "spec", "replicas")),
    ((*HEAD_CONTAINER, "resources"), (*HEAD, "resources")),
], ids=["rayVersion", "runtimeEnvYAML", "image", "replicas", "resources"])
def test_a_misplaced_field_fails_the_schema(rayjob, source, target):
    with pytest.raises(ValidationError):
        validate(_move(rayjob[0], source, target))


def test_a_mistyped_field_fails_the_schema(rayjob):
    doc = copy.deepcopy(rayjob[0])
    doc["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    with pytest.raises(ValidationError):
        validate(doc)


def test_a_rayjob_without_a_working_dir_uri_says_how_to_ship_the_source(example):
    proc = raybake("job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "inside the cluster" in proc.stderr
    assert "--working-dir-zip" in proc.stderr and "--working-dir-uri" in proc.stderr


@pytest.mark.parametrize(("uri", "words"), [
    ("/tmp/wd.zip", "not a working_dir package a Ray cluster fetches"),
    ("https://example.com/wd.tar", "not a working_dir package a Ray cluster fetches"),
    ("s3://bucket/wd.zip", "Ray fetches s3:// URIs with boto3"),  # the example locks smart-open, not boto3
])
def test_a_working_dir_uri_the_image_cannot_fetch_is_refused(example, uri, words):
    proc = raybake("job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
                   "--working-dir-uri", uri, check=False)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert "fix:" in proc.stderr and "Traceback" not in proc.stderr


def test_the_working_dir_zip_unpacks_with_ray_to_the_staged_tree(example, tmp_path):
    from ray._private.runtime_env.packaging import unzip_package

    stage = tmp_path / "wd"
    zips = [tmp_path / "a.zip", tmp_path / "b.zip"]
    for z in zips:
        raybake("job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
                "--working-dir-uri", URI, "--working-dir-zip", str(z), "--stage-dir", str(stage))
    assert zips[0].read_bytes() == zips[1].read_bytes()  # the same tree, the same bytes
    # As a Ray node unpacks a remote working_dir package.
    unpacked = tmp_path / "unpacked"
    unzip_package(str(zips[0]), str(unpacked), remove_top_level_directory=True, unlink_zip=False)
    staged = {p.relative_to(stage).as_posix(): p.read_bytes() for p in stage.rglob("*")
              if p.is_file() and p.name != ".raybake-stage"}
    assert {p.relative_to(unpacked).as_posix(): p.read_bytes() for p in unpacked.rglob("*") if p.is_file()} == staged
    assert "src/ray_app/stats.py" in staged and "main.py" in staged


@pytest.mark.engine
@pytest.mark.registry
def test_manifests_name_the_pushed_image_by_digest(engine, example, unique_repo, tmp_path):
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    reference = raybake("tag", "-C", str(example), env=env).stdout.strip()
    # A stand-in under the reference: job-config only asks the registry for its digest.
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "marker").write_text(reference)
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f'FROM scratch\nLABEL {LABEL_INPUT_HASH}="{input_hash(example, env)}"\nCOPY marker /marker\n')
    docker("buildx", "build", "--load", "-t", reference, str(tmp_path / "ctx"))
    try:
        pushed = re.search(r"digest: (sha256:[0-9a-f]{64})", docker("push", reference).stdout).group(1)
    finally:
        docker("image", "rm", reference, check=False)
    by_digest = f"{reference.rsplit(':', 1)[0]}@{pushed}"
    for args in (["--format", "kuberay", "--entrypoint", "python main.py", "--working-dir-uri", URI,
                  "--stage-dir", str(tmp_path / "wd")], ["--format", "kuberay-cluster"]):
        manifest = yaml.safe_load(raybake("job-config", "-C", str(example), *args, env=env).stdout)
        validate(manifest)
        assert [c["image"] for c in containers(manifest)] == [by_digest, by_digest]


@pytest.fixture
def served(tmp_path):
    """An HTTP server on loopback for tmp_path/www; a Ray head on the host network reaches it."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.engine
@pytest.mark.ray
def test_the_rayjob_runs_the_way_kuberay_submits_it(engine, example, served, unique_repo, tmp_path):
    """The RayJob's entrypoint and runtimeEnvYAML, submitted as KubeRay's
    submitter pod does it (`ray job submit --runtime-env-json ... -- ENTRYPOINT`
    in a shell, in the head's image) to a head running the image; the source
    comes from the zip at --working-dir-uri, fetched by the head."""
    from raybake.localcluster import local_head

    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)  # a fresh build (from the layer cache): it has every label
    env.pop("RAY_ADDRESS", None)
    built = raybake("build", "-C", str(example), env=env, timeout=1200)
    python = re.search(r"\(Python (\d+\.\d+\.\d+) from ", built.stderr + built.stdout).group(1)
    reference = raybake("tag", "-C", str(example), env=env).stdout.strip()
    label = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL_PYTHON}"}}}}', reference)
    assert label.stdout.strip() == python  # what job-config compares a client's Python with
    www, base = served
    manifest = yaml.safe_load(raybake(
        "job-config", "-C", str(example), "--format", "kuberay", "--entrypoint", "python main.py",
        "--working-dir-uri", f"{base}/ray-app.zip", "--working-dir-zip", str(www / "ray-app.zip"),
        "--stage-dir", str(tmp_path / "wd"), env=env).stdout)
    validate(manifest)
    spec = manifest["spec"]
    image = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    runtime_env_json = json.dumps(yaml.safe_load(spec["runtimeEnvYAML"]))
    with local_head(image) as head:
        # KubeRay quotes the JSON with Go's strconv.Quote, which json.dumps matches for this text.
        command = (f"ray job submit --address {head.address} --runtime-env-json {json.dumps(runtime_env_json)} "
                   f"-- {spec['entrypoint']}")
        proc = docker("exec", head.container_id, "/bin/bash", "-c", command, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ray-app job OK" in out and "worker says: hello from ray_app" in out, out
    assert "worker python: /opt/venv/bin/python" in out
    assert shlex.split(spec["entrypoint"])[0] == "/opt/venv/bin/python"
