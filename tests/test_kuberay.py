"""KubeRay manifests (`raybake job-config --format kuberay` / `kuberay-cluster` /
`kuberay-service` / `kuberay-prepull`) against KubeRay's own CRD schemas
(tests/data/kuberay: release v1.7.0), Ray's own runtime_env and Serve config
parsers and unzip, and a real Ray head running the RayJob's submit command the
way KubeRay's submitter pod does, its working_dir from an S3-compatible server."""

from __future__ import annotations

import copy
import functools
import http.server
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import BUCKET, EXAMPLE
from helpers import docker, http_server, raybake
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


def cluster_of(manifest: dict) -> dict:
    return {"RayJob": lambda s: s["rayClusterSpec"], "RayService": lambda s: s["rayClusterConfig"],
            "RayCluster": lambda s: s}[manifest["kind"]](manifest["spec"])


def check_operator_rules(manifest: dict) -> None:
    """What KubeRay's operator checks beyond the schema
    (ray-operator/controllers/ray/utils/validation.go, v1.7.0) and raybake relies on."""
    name, kind = manifest["metadata"]["name"], manifest["kind"]
    assert len(name) <= {"RayJob": 47, "RayCluster": 53, "RayService": 53}[kind] and DNS_1035.fullmatch(name), name
    cluster = cluster_of(manifest)
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    for group in cluster["workerGroupSpecs"]:
        assert DNS_1123.fullmatch(group["groupName"]) and len(group["groupName"]) <= 63
        # No autoscaler: both bounds are required, and replicas within them.
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["template"]["spec"]["containers"]
    for key, value in manifest["metadata"].get("labels", {}).items():
        assert re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key)
        assert len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value)


def pod_specs(manifest: dict) -> list[dict]:
    """Every pod template's spec: head, worker groups, a RayJob's submitter."""
    cluster = cluster_of(manifest)
    submitter = manifest["spec"].get("submitterPodTemplate")
    return [g["template"]["spec"] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]] + (
        [submitter["spec"]] if submitter else [])


def containers(manifest: dict) -> list[dict]:
    cluster = cluster_of(manifest)
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kuberay") / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    return root


@pytest.fixture(scope="module")
def rayjob(pushed_example, tmp_path_factory) -> tuple[dict, str]:
    """The example's RayJob and the reference of its pushed image (by digest)."""
    out = raybake("job-config", "-C", str(pushed_example.root), "--format", "kuberay", "--entrypoint",
                  "python main.py", "--working-dir-uri", URI,
                  "--stage-dir", str(tmp_path_factory.mktemp("wd") / "wd"), env=pushed_example.env).stdout
    return yaml.safe_load(out), pushed_example.by_digest


# The manifests name the image pushed to the test registry (a cluster pulls from there): engine tests.
@pytest.mark.engine
@pytest.mark.registry
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


@pytest.mark.engine
@pytest.mark.registry
def test_runtime_env_yaml_carries_the_working_dir_uri_and_is_a_ray_runtime_env(rayjob):
    from ray.runtime_env import RuntimeEnv

    text = rayjob[0]["spec"]["runtimeEnvYAML"]
    env = yaml.safe_load(text)
    assert env == {"working_dir": URI, "env_vars": {"PYTHONPATH": "src"},
                   "config": {"setup_timeout_seconds": 600}}
    RuntimeEnv(**env)  # Ray's own parser accepts it (a local path or a bad URI would not pass on the cluster)


@pytest.mark.engine
@pytest.mark.registry
def test_raycluster_matches_the_kuberay_crd(pushed_example):
    tag = pushed_example.by_digest
    manifest = yaml.safe_load(raybake("job-config", "-C", str(pushed_example.root), "--format", "kuberay-cluster",
                                      env=pushed_example.env).stdout)
    validate(manifest)
    check_operator_rules(manifest)
    assert manifest["kind"] == "RayCluster" and manifest["metadata"]["name"] == "ray-app-default"
    assert manifest["spec"]["rayVersion"] == EXAMPLE_RAY
    assert [c["image"] for c in containers(manifest)] == [tag, tag]


SERVE_IMPORT_PATH = "ray_app.serve:app"


@pytest.mark.engine
@pytest.mark.registry
def test_rayservice_matches_the_kuberay_crd_and_ray_serves_schema(pushed_example, tmp_path):
    from ray.runtime_env import RuntimeEnv
    from ray.serve.schema import ServeDeploySchema

    tag = pushed_example.by_digest
    manifest = yaml.safe_load(raybake(
        "job-config", "-C", str(pushed_example.root), "--format", "kuberay-service", "--serve-import-path",
        SERVE_IMPORT_PATH, "--working-dir-uri", URI, "--stage-dir", str(tmp_path / "wd"),
        env=pushed_example.env).stdout)
    validate(manifest)
    check_operator_rules(manifest)
    assert manifest["kind"] == "RayService" and manifest["metadata"]["name"] == "ray-app-default"
    assert manifest["spec"]["rayClusterConfig"]["rayVersion"] == EXAMPLE_RAY
    assert [c["image"] for c in containers(manifest)] == [tag, tag]
    # serveConfigV2 is what Ray Serve's own schema accepts (KubeRay hands it to Serve's REST API as is).
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == SERVE_IMPORT_PATH and app.route_prefix == "/"
    assert app.runtime_env["working_dir"] == URI and app.runtime_env["env_vars"] == {"PYTHONPATH": "src"}
    RuntimeEnv(**app.runtime_env)


@pytest.mark.parametrize("args", [["--serve-import-path", "ray_app.serve"], ["--serve-import-path", "a:b:c"], []])
def test_a_rayservice_needs_a_serve_import_path(example, args):
    proc = raybake("job-config", "-C", str(example), "--format", "kuberay-service", "--working-dir-uri", URI,
                   *args, check=False)
    assert proc.returncode == 2 and "MODULE:APP" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


POD_OPTIONS = ["--namespace", "ml-jobs", "--service-account", "ray-runner",
               "--image-pull-secret", "regcred", "--image-pull-secret", "mirror"]


@pytest.mark.parametrize("args", [
    ["--format", "kuberay", "--entrypoint", "python main.py", "--working-dir-uri", URI],
    ["--format", "kuberay-cluster"],
    ["--format", "kuberay-service", "--serve-import-path", SERVE_IMPORT_PATH, "--working-dir-uri", URI],
], ids=["RayJob", "RayCluster", "RayService"])
@pytest.mark.engine
@pytest.mark.registry
def test_namespace_service_account_and_pull_secrets_reach_every_pod(pushed_example, tmp_path, args):
    manifest = yaml.safe_load(raybake("job-config", "-C", str(pushed_example.root), *args, *POD_OPTIONS,
                                      "--stage-dir", str(tmp_path / "wd"), env=pushed_example.env).stdout)
    validate(manifest)
    assert manifest["metadata"]["namespace"] == "ml-jobs"
    pods = pod_specs(manifest)
    # A RayJob's submitter pod pulls the same image: it is written out (KubeRay's default plus the options).
    assert len(pods) == (3 if manifest["kind"] == "RayJob" else 2)
    for pod in pods:
        assert pod["serviceAccountName"] == "ray-runner"
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    if manifest["kind"] == "RayJob":
        (submitter,) = manifest["spec"]["submitterPodTemplate"]["spec"]["containers"]
        assert submitter["name"] == "ray-job-submitter" and submitter["image"] == containers(manifest)[0]["image"]


def test_pod_options_need_a_kuberay_format(example):
    proc = raybake("job-config", "-C", str(example), "--entrypoint", "python main.py", "--namespace", "x",
                   check=False)
    assert proc.returncode == 2 and "kuberay formats" in proc.stderr


@functools.cache
def pod_template_validator() -> Draft4Validator:
    """Kubernetes' PodTemplateSpec schema, as KubeRay's RayCluster CRD embeds it (its head group's template)."""
    doc = yaml.safe_load((CRDS / "ray.io_rayclusters.yaml").read_text())
    (version,) = [v for v in doc["spec"]["versions"] if v["storage"]]
    template = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["headGroupSpec"][
        "properties"]["template"]
    return Draft4Validator(strict(template))


@pytest.mark.engine
@pytest.mark.registry
def test_prepull_daemon_set_pulls_every_spec_image_by_init_containers(pushed_example, tmp_path):
    from raybake.planner import identities_for
    from raybake.project import load_project
    from raybake.trust import attach_record

    root, env = pushed_example.root, pushed_example.env
    # The example's second spec (py313) pushed too: a stand-in with its input-hash label, as pushed_example's.
    (py313,) = identities_for(load_project(root), ("py313",), environ=env)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f'FROM scratch\nLABEL {LABEL_INPUT_HASH}="{py313.input_hash.hexdigest}"\n')
    docker("buildx", "build", "--load", "-t", py313.reference, str(tmp_path / "ctx"))
    try:
        pushed = re.search(r"digest: (sha256:[0-9a-f]{64})", docker("push", py313.reference).stdout).group(1)
    finally:
        docker("image", "rm", py313.reference, check=False)
    tags = [pushed_example.by_digest, f"{py313.reference.rsplit(':', 1)[0]}@{pushed}"]
    attach_record(tags[1], py313.input_hash.hexdigest, "py313")  # as raybake records a verified push
    manifest = yaml.safe_load(raybake("job-config", "-C", str(root), "--format", "kuberay-prepull",
                                      *POD_OPTIONS, env=env).stdout)
    assert manifest["apiVersion"] == "apps/v1" and manifest["kind"] == "DaemonSet"
    assert DNS_1123.fullmatch(manifest["metadata"]["name"]) and manifest["metadata"]["namespace"] == "ml-jobs"
    template = manifest["spec"]["template"]
    pod_template_validator().validate(template)
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()  # the API server refuses a DaemonSet otherwise
    pod = template["spec"]
    assert [c["image"] for c in pod["initContainers"]] == tags  # one per spec, the images job configs name
    assert len({c["name"] for c in pod["initContainers"]}) == 2
    assert all(DNS_1123.fullmatch(c["name"]) for c in pod["initContainers"] + pod["containers"])
    (main,) = pod["containers"]
    assert main["image"].startswith("registry.k8s.io/pause:")
    assert pod["tolerations"] == [{"operator": "Exists"}]  # tainted (GPU) nodes pull too
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    one = yaml.safe_load(raybake("job-config", "-C", str(root), "--format", "kuberay-prepull", "py313",
                                 env=env).stdout)
    assert [c["image"] for c in one["spec"]["template"]["spec"]["initContainers"]] == tags[1:]


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
@pytest.mark.engine
@pytest.mark.registry
def test_a_misplaced_field_fails_the_schema(rayjob, source, target):
    with pytest.raises(ValidationError):
        validate(_move(rayjob[0], source, target))


@pytest.mark.engine
@pytest.mark.registry
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


@pytest.mark.engine
@pytest.mark.registry
def test_the_working_dir_zip_unpacks_with_ray_to_the_staged_tree(pushed_example, tmp_path):
    from ray._private.runtime_env.packaging import unzip_package

    stage = tmp_path / "wd"
    zips = [tmp_path / "a.zip", tmp_path / "b.zip"]
    for z in zips:
        raybake("job-config", "-C", str(pushed_example.root), "--format", "kuberay", "--entrypoint",
                "python main.py", "--working-dir-uri", URI, "--working-dir-zip", str(z), "--stage-dir", str(stage),
                env=pushed_example.env)
    assert zips[0].read_bytes() == zips[1].read_bytes()  # the same tree, the same bytes
    # As a Ray node unpacks a remote working_dir package.
    unpacked = tmp_path / "unpacked"
    unzip_package(str(zips[0]), str(unpacked), remove_top_level_directory=True, unlink_zip=False)
    staged = {p.relative_to(stage).as_posix(): p.read_bytes() for p in stage.rglob("*")
              if p.is_file() and p.name != ".raybake-stage"}
    assert {p.relative_to(unpacked).as_posix(): p.read_bytes() for p in unpacked.rglob("*") if p.is_file()} == staged
    assert "src/ray_app/stats.py" in staged and "main.py" in staged


@pytest.mark.parametrize("args", [["--format", "kuberay", "--entrypoint", "python main.py", "--working-dir-uri", URI],
                                  ["--format", "kuberay-cluster"],
                                  ["--format", "kuberay-service", "--serve-import-path", "m:app", "--working-dir-uri", URI],
                                  ["--format", "kuberay-prepull"]],
                         ids=["kuberay", "kuberay-cluster", "kuberay-service", "kuberay-prepull"])
def test_a_local_image_name_is_refused_with_the_push_fix(example, args, tmp_path):
    """`ray-app` (the default repository) is no name a cluster can pull."""
    proc = raybake("job-config", "-C", str(example), *args, "--stage-dir", str(tmp_path / "wd"), check=False)
    assert proc.returncode == 2 and "is a local name" in proc.stderr, proc.stderr
    assert "repository" in proc.stderr and "raybake build --push" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.engine
@pytest.mark.registry
def test_an_image_not_pushed_is_refused_with_the_push_fix(engine, example, unique_repo):
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    proc = raybake("job-config", "-C", str(example), "--format", "kuberay-cluster", env=env, check=False)
    assert proc.returncode == 2 and "is not in its registry yet" in proc.stderr, proc.stderr
    assert "raybake build --push" in proc.stderr


@pytest.fixture
def served(tmp_path):
    """An HTTP server on loopback for tmp_path/www; a Ray head on the host network reaches it."""
    root = tmp_path / "www"
    root.mkdir()
    with http_server(functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))) as url:
        yield root, url


@dataclass(frozen=True)
class Head:
    image: str  # REPOSITORY@sha256:..., as the manifests name it
    container_id: str
    address: str


@pytest.fixture(scope="module")
def head(ray_example, s3, tmp_path_factory) -> Iterator[Head]:
    """One head in the pushed image, by digest, for the module's jobs (each job
    fetches its own working_dir): the S3 server's address and keys in its
    environment, as a cluster's service account would give them."""
    from raybake.localcluster import local_head

    root, env, _, _ = ray_example
    aws, _ = s3
    manifest = yaml.safe_load(raybake(
        "job-config", "-C", str(root), "--format", "kuberay", "--entrypoint", "python main.py",
        "--working-dir-uri", "https://example.invalid/ray-app.zip",
        "--stage-dir", str(tmp_path_factory.mktemp("wd") / "wd"), env=env).stdout)
    image = head_image(manifest)
    with local_head(image, env=aws) as running:
        yield Head(image, running.container_id, running.address)


def head_image(manifest: dict) -> str:
    return cluster_of(manifest)["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]


def submit_as_kuberay(head, spec: dict) -> subprocess.CompletedProcess[str]:
    """`ray job submit` of a RayJob's spec as KubeRay's submitter runs it: in
    the head's image, in a login shell (`/bin/bash -lc`: KubeRay with
    ENABLE_LOGIN_SHELL, and its operators before v1.4), `ray` found on PATH."""
    runtime_env_json = json.dumps(yaml.safe_load(spec["runtimeEnvYAML"]))
    # KubeRay quotes the JSON with Go's strconv.Quote, which json.dumps matches for this text.
    command = (f"ray job submit --address {head.address} --runtime-env-json {json.dumps(runtime_env_json)} "
               f"-- {spec['entrypoint']}")
    return docker("exec", head.container_id, "/bin/bash", "-lc", command, check=False)


@pytest.mark.engine
@pytest.mark.registry
def test_the_image_keeps_its_environment_in_a_login_shell(ray_example):
    """/etc/profile sets PATH anew (Debian's drops /opt/venv/bin): `ray` and
    `python` must still be the venv's, for root and for another user."""
    reference = ray_example[2]
    for user in ("0", "1000:1000"):
        out = docker("run", "--rm", "--network", "none", "--user", user, reference, "/bin/bash", "-lc",
                     "command -v ray python; echo $VIRTUAL_ENV").stdout.split()
        assert out == ["/opt/venv/bin/ray", "/opt/venv/bin/python", "/opt/venv"], (user, out)


@pytest.mark.registry
@pytest.mark.engine
@pytest.mark.ray
def test_the_rayjob_runs_the_way_kuberay_submits_it(ray_example, served, head, tmp_path):
    """The RayJob's entrypoint and runtimeEnvYAML, submitted as KubeRay's
    submitter pod does it to a head running the image; the source comes from
    the zip at --working-dir-uri, fetched by the head."""
    root, env, reference, build_output = ray_example
    python = re.search(r"\(Python (\d+\.\d+\.\d+) from ", build_output).group(1)
    label = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL_PYTHON}"}}}}', reference)
    assert label.stdout.strip() == python  # what job-config compares a client's Python with
    www, base = served
    manifest = yaml.safe_load(raybake(
        "job-config", "-C", str(root), "--format", "kuberay", "--entrypoint", "python main.py",
        "--working-dir-uri", f"{base}/ray-app.zip", "--working-dir-zip", str(www / "ray-app.zip"),
        "--stage-dir", str(tmp_path / "wd"), env=env).stdout)
    validate(manifest)
    spec = manifest["spec"]
    assert head_image(manifest) == head.image
    proc = submit_as_kuberay(head, spec)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ray-app job OK" in out and "worker says: hello from ray_app" in out, out
    assert "worker python: /opt/venv/bin/python" in out
    assert shlex.split(spec["entrypoint"])[0] == "/opt/venv/bin/python"


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.ray
def test_a_working_dir_uploaded_to_s3_runs_on_a_head_that_fetches_it(ray_example, s3, head, tmp_path):
    """`job-config --upload s3://...` against an S3-compatible server on
    127.0.0.1: the RayJob names the uploaded package, and a head in the image
    (boto3 and smart-open from the lock, the server's address and keys in its
    environment, as a cluster's service account would give them) fetches it
    and runs the project's code."""
    root, env, _, _ = ray_example
    aws, client = s3
    manifest = yaml.safe_load(raybake(
        "job-config", "-C", str(root), "--format", "kuberay", "--entrypoint", "python main.py",
        "--upload", f"s3://{BUCKET}/jobs", "--stage-dir", str(tmp_path / "wd"), env={**env, **aws}).stdout)
    validate(manifest)
    uri = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])["working_dir"]
    assert re.fullmatch(rf"s3://{BUCKET}/jobs/ray-app-[0-9a-f]{{16}}\.zip", uri), uri
    assert client.head_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))["ContentLength"] > 0
    assert head_image(manifest) == head.image
    proc = submit_as_kuberay(head, manifest["spec"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ray-app job OK" in out and "worker says: hello from ray_app" in out, out
    assert "worker python: /opt/venv/bin/python" in out
