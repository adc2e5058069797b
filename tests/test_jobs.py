"""Job configs: pure pieces and the CLI output users paste."""

import json
import os

import pytest
import yaml
from helpers import raybake

from raybake.jobs import entrypoint_command


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
