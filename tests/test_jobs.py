"""Job configs: pure pieces and the CLI output users paste."""

import importlib.metadata
import json
import os
import platform
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLE
from helpers import docker, raybake

from raybake.contract import LABEL_INPUT_HASH, LABEL_PYTHON
from raybake.errors import ToolError
from raybake.jobs import Client, check_client, entrypoint_command


@pytest.mark.parametrize(("args", "expected"), [
    (["python", "main.py"], "/opt/venv/bin/python main.py"),
    (["python3", "-m", "app", "--x", "a b"], "/opt/venv/bin/python -m app --x 'a b'"),
    (["main.py"], "/opt/venv/bin/python main.py"),
    (["/opt/venv/bin/ray", "status"], "/opt/venv/bin/ray status"),
])
def test_entrypoint_names_the_image_interpreter(args, expected):
    assert entrypoint_command(args) == expected


def test_ray_format_is_submit_job_kwargs(copy_fixture, tmp_path):
    root = copy_fixture("workspace")
    out = raybake("job-config", "-C", str(root), "--entrypoint", "python -m wsroot",
                  "--stage-dir", str(tmp_path / "wd")).stdout
    config = json.loads(out)
    assert set(config) == {"entrypoint", "runtime_env", "metadata"}
    env = config["runtime_env"]
    assert env["working_dir"] == str(tmp_path / "wd")
    assert env["env_vars"]["PYTHONPATH"] == "src:libs/liba/src:libs/libb/src"
    assert env["config"] == {"setup_timeout_seconds": 600}
    # runtime_env image_uri cannot be combined with working_dir: never emitted.
    assert "image_uri" not in env
    assert config["metadata"]["raybake.image"].startswith("wsroot:default-")
    assert (tmp_path / "wd" / "libs" / "liba" / "src" / "liba" / "__init__.py").is_file()


def test_anyscale_format_names_the_node_image(copy_fixture, tmp_path):
    root = copy_fixture("small")
    tag = raybake("tag", "-C", str(root)).stdout.strip()
    doc = yaml.safe_load(raybake("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint",
                                 "python -m small", "--stage-dir", str(tmp_path / "wd")).stdout)
    assert doc["image_uri"] == tag
    assert doc["entrypoint"] == "/opt/venv/bin/python -m small"
    assert doc["working_dir"] == "." and ".env" in doc["excludes"] and ".git" in doc["excludes"]


def test_job_config_uses_the_pin(copy_fixture, tmp_path):
    root = copy_fixture("small")
    raybake("pin", "-C", str(root), check=False)  # writes the pin (exit 1: it was missing)
    pin = json.loads((root / "raybake-pin.json").read_text())
    pin["images"]["default"] = "small:default-0123456789abcdef"
    (root / "raybake-pin.json").write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n")
    config = json.loads(raybake("job-config", "-C", str(root), "--entrypoint", "python x.py",
                                "--stage-dir", str(tmp_path / "wd")).stdout)
    assert config["metadata"]["raybake.image"] == "small:default-0123456789abcdef"


def test_submit_refuses_an_image_without_ray_before_starting_anything(copy_fixture):
    """small locks no Ray: no build, no head container, no traceback."""
    proc = raybake("submit", "-C", str(copy_fixture("small")), "--", "python", "main.py", check=False,
                   env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stderr
    assert "would have no Ray" in proc.stderr and "uv add 'ray[default]'" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the client's Ray and Python against the image's ----

CLIENT_RAY = importlib.metadata.version("ray")  # raybake's environment is the job client
CLIENT_PYTHON = platform.python_version()


def example_locking_another_ray(copy_fixture) -> tuple[Path, str]:
    """A copy of the example whose pyproject and lock (kept current) pin a Ray other than the client's."""
    root = copy_fixture(EXAMPLE)
    locked = next(p["version"] for p in tomllib.loads((root / "uv.lock").read_text())["package"]
                  if p["name"] == "ray")
    other = "2.59.0" if CLIENT_RAY != "2.59.0" else "2.58.0"
    for name in ("pyproject.toml", "uv.lock"):
        path = root / name
        assert locked in path.read_text()
        path.write_text(path.read_text().replace(locked, other))
    return root, other


def other_python() -> str:
    return "3.12" if not CLIENT_PYTHON.startswith("3.12.") else "3.13"


def test_job_config_refuses_a_client_with_another_ray(copy_fixture, tmp_path):
    root, image_ray = example_locking_another_ray(copy_fixture)
    proc = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                   "--stage-dir", str(tmp_path / "wd"), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Ray here is {CLIENT_RAY}, the image has Ray {image_ray}" in proc.stderr
    assert f"ray[default]=={image_ray}" in proc.stderr and "Traceback" not in proc.stderr
    # A RayJob is submitted from inside the cluster, with the image's own Ray: nothing to refuse.
    manifest = yaml.safe_load(raybake("job-config", "-C", str(root), "--format", "kuberay", "--entrypoint",
                                      "python main.py", "--working-dir-uri", "https://example.com/wd.zip",
                                      "--stage-dir", str(tmp_path / "wd")).stdout)
    assert manifest["spec"]["rayClusterSpec"]["rayVersion"] == image_ray


def test_submit_to_a_cluster_refuses_a_client_with_another_ray_before_building(copy_fixture):
    """With --address the job client is raybake's own Ray (raybake's local head uses the image's)."""
    root, image_ray = example_locking_another_ray(copy_fixture)
    proc = raybake("submit", "-C", str(root), "--address", "http://127.0.0.1:1", "--", "python", "main.py",
                   check=False, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Ray here is {CLIENT_RAY}, the image has Ray {image_ray}" in proc.stderr
    assert "Docker" not in proc.stderr and "Traceback" not in proc.stderr  # refused before any build


def test_job_config_and_submit_refuse_a_client_with_another_python(copy_fixture, tmp_path):
    root = copy_fixture(EXAMPLE)
    (root / ".python-version").write_text(f"{other_python()}\n")
    wanted = f"Python here is {CLIENT_PYTHON}, the image's is {other_python()}"
    config = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                     "--stage-dir", str(tmp_path / "wd"), check=False)
    submitted = raybake("submit", "-C", str(root), "--address", "http://127.0.0.1:1", "--", "python", "main.py",
                        check=False, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    for proc in (config, submitted):
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert wanted in proc.stderr and f"--python {other_python()}" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_client_outside_requires_python_is_refused():
    with pytest.raises(ToolError, match="outside the project's requires-python"):
        check_client(Client(ray="2.60.0", python="3.11.7"), image_ray="2.60.0", image_python=None,
                     requires_python=">=3.12")
    # Unknown image Python within requires-python, or no Ray here to compare: nothing is known to differ.
    check_client(Client(ray="2.60.0", python="3.12.1"), image_ray="2.60.0", image_python=None,
                 requires_python=">=3.12")
    check_client(Client(ray=None, python="3.12.1"), image_ray="2.60.0", image_python="3.12", requires_python=None)


@pytest.mark.engine
def test_job_config_reads_the_image_python_from_its_label(engine, copy_fixture, unique_repo, tmp_path):
    """Without a Python in the spec, the image's label tells it."""
    root = copy_fixture(EXAMPLE)
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    (tmp_path / "ctx").mkdir()
    # The input-hash label marks it as raybake's build under that tag (its first 16 digits suffice).
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f'FROM {engine.base_image}\nLABEL {LABEL_INPUT_HASH}="{reference.rsplit("-", 1)[-1]}" '
        f'{LABEL_PYTHON}="{other_python()}.1"\n')
    docker("buildx", "build", "--load", "-t", reference, str(tmp_path / "ctx"))
    try:
        proc = raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
                       "--stage-dir", str(tmp_path / "wd"), env=env, check=False)
    finally:
        docker("image", "rm", reference, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Python here is {CLIENT_PYTHON}, the image's is {other_python()}.1" in proc.stderr
    # The image gone, nothing tells the Python: job-config only writes a file, and does.
    raybake("job-config", "-C", str(root), "--entrypoint", "python main.py",
            "--stage-dir", str(tmp_path / "wd"), env=env)


def test_anyscale_format_takes_a_working_dir_uri(copy_fixture, tmp_path):
    root = copy_fixture("small")
    doc = yaml.safe_load(raybake("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint",
                                 "python -m small", "--working-dir-uri", "file:///shared/small-1.zip",
                                 "--stage-dir", str(tmp_path / "wd")).stdout)
    assert doc["working_dir"] == "file:///shared/small-1.zip" and "excludes" not in doc
