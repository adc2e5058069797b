"""End to end on a real Ray cluster: the example project's image holds the
dependencies, its source reaches the job through working_dir."""

import os
import re
import shutil

import pytest
from conftest import EXAMPLE
from helpers import raybake

pytestmark = [pytest.mark.engine, pytest.mark.ray]


@pytest.fixture(scope="module")
def example(ray_example, tmp_path_factory):
    """A copy of the session's built example (its image is the same: source is not
    hashed), with a .env and a .git that must never ship."""
    built_root, env, _, _ = ray_example
    root = tmp_path_factory.mktemp("e2e") / "ray-app"
    shutil.copytree(built_root, root)
    (root / ".env").write_text("SECRET_TOKEN=do-not-ship\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root, env


def test_job_runs_image_dependencies_and_edited_source_without_a_build(example):
    """A source edit leaves the tag alone and builds nothing; the job's tasks run on
    the image's interpreter, import pandas/pyarrow from the image and the edited
    project code from working_dir."""
    root, env = example
    tag_before = raybake("tag", "-C", str(root), env=env).stdout
    stats = root / "src" / "ray_app" / "stats.py"
    stats.write_text(stats.read_text().replace("hello from ray_app", "hello from an edit"))
    assert raybake("tag", "-C", str(root), env=env).stdout == tag_before
    proc = raybake("submit", "-C", str(root), "--", "python", "main.py", env=env, timeout=600)
    out = proc.stdout
    assert "up to date" in proc.stderr and "building" not in proc.stderr
    assert "ray-app job OK" in out, out + proc.stderr
    assert "worker python: /opt/venv/bin/python" in out
    assert "worker says: hello from an edit" in out
    assert "batches: 4, total count: 40, max: 39" in out
    assert "starting a local Ray head" in proc.stderr and "stopping the local Ray head" in proc.stderr
    assert "Uploading package" not in out + proc.stderr  # the job client's own log lines are not the job's


def test_over_the_cap_fails_before_upload_naming_the_largest(example, tmp_path):
    root, env = example
    big = root / "data" / "weights.bin"
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(os.urandom(3 * 2**20))
    try:
        with (root / "pyproject.toml").open("a") as f:
            f.write("\n[tool.raybake]\nstage_max_mb = 2\n")
        proc = raybake("submit", "-C", str(root), "--", "python", "main.py", env=env, check=False)
        assert proc.returncode == 2
        assert "data/weights.bin" in proc.stderr and ".rayignore" in proc.stderr
        assert "starting a local Ray head" not in proc.stderr
    finally:
        big.unlink()
        text = (root / "pyproject.toml").read_text()
        (root / "pyproject.toml").write_text(text.replace("\n[tool.raybake]\nstage_max_mb = 2\n", ""))


def test_staged_tree_never_holds_env_or_git(example, tmp_path):
    root, env = example
    out = tmp_path / "staged"
    raybake("stage", "-C", str(root), "--out", str(out), env=env)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert "main.py" in names and "src/ray_app/stats.py" in names
    assert not any(re.match(r"(^|/)(\.env|\.git)(/|$)", n) for n in names), names


def test_a_failed_job_fails_the_command_without_pointing_at_the_stopped_head(example):
    root, env = example
    proc = raybake("submit", "-C", str(root), "--", "python", "-c", "raise SystemExit(3)", env=env,
                   timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ended FAILED" in proc.stderr and "has been stopped" in proc.stderr
    assert "ray job logs" not in proc.stderr


SPREAD = '''\
"""Several actors on every node: where each runs, with which Python, and a project function's result."""
import json
import sys

import ray

ray.init()
names = sorted({k for n in ray.nodes() if n["Alive"] for k in n["Resources"] if k.startswith("node_")})


@ray.remote(num_cpus=0)
class Probe:
    def report(self):
        import pandas
        import ray_app.stats

        return {"node": ray.get_runtime_context().get_node_id(), "python": sys.executable,
                "pandas": pandas.__file__, "project": ray_app.stats.__file__,
                "summary": ray_app.stats.summarize([1.0, 2.0, 3.0])}


actors = [Probe.options(resources={name: 1}).remote() for name in names for _ in range(ACTORS)]
print("SPREAD " + json.dumps({"resources": names, "reports": ray.get([a.report.remote() for a in actors])}))
'''


def test_multi_node_cluster_runs_image_environment_and_working_dir_on_every_node(example):
    """A head and two worker containers of the image; actors pinned to each node by its resource."""
    import json

    from raybake.localcluster import local_cluster
    from raybake.tools.ray import submit_and_follow

    root, env = example
    (root / "spread.py").write_text(SPREAD.replace("ACTORS)", "2)"))
    image = raybake("tag", "-C", str(root), env=env).stdout.strip().splitlines()[-1]
    config = json.loads(raybake("job-config", "-C", str(root), "--entrypoint", "python spread.py", env=env).stdout)
    lines: list[str] = []
    with local_cluster(image, workers=2, cpus_per_node=1) as cluster:
        assert cluster.nodes == 3
        submit_and_follow(cluster.address, entrypoint=config["entrypoint"], runtime_env=config["runtime_env"],
                          metadata={}, on_log=lines.append, head_outlives_job=False)
    result = json.loads(next(line.split(" ", 1)[1] for line in lines if line.startswith("SPREAD ")))
    assert result["resources"] == ["node_0", "node_1", "node_2"]
    reports = result["reports"]
    assert len(reports) == 6 and len({r["node"] for r in reports}) == 3  # two actors on each node
    for r in reports:
        assert r["python"] == "/opt/venv/bin/python" and r["pandas"].startswith("/opt/venv/")
        assert "/runtime_resources/working_dir_files/" in r["project"], r["project"]
        assert r["summary"] == {"count": 3.0, "mean": 2.0, "max": 3.0}


def test_ray_without_its_default_extra_is_refused_before_anything_starts(engine, unique_repo, tmp_path):
    """A project that locks ray[data] but not ray[default]: a head in its image
    would die at start (no dashboard, no job server). submit and the cluster
    formats refuse it from the lock, before building or starting anything, with
    the fix that keeps the project's extras; build warns and builds."""
    import subprocess

    from raybake.tools.uv import uv_bin

    root = tmp_path / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"ray[default]==', '"ray[data]=='))
    subprocess.run([str(uv_bin()), "lock", "--quiet"], cwd=root, check=True, timeout=300)
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    env.pop("RAY_ADDRESS", None)
    fix = "uv add 'ray[data,default]'"
    proc = raybake("submit", "-C", str(root), "--", "python", "main.py", env=env, check=False)
    assert proc.returncode == 2 and "without its `default` extra" in proc.stderr and fix in proc.stderr, proc.stderr
    assert "building" not in proc.stderr and "starting a local Ray head" not in proc.stderr
    for args in (["--format", "kuberay-cluster"], ["--format", "anyscale", "--entrypoint", "python main.py"]):
        proc = raybake("job-config", "-C", str(root), *args, env=env, check=False)
        assert proc.returncode == 2 and fix in proc.stderr, (args, proc.stderr)
    # build warns, then goes on building (stopped at once here: the image itself is any Ray image).
    built = raybake("build", "-C", str(root), env={**env, "RAYBAKE_BUILD_TIMEOUT": "1"}, check=False)
    warning = "warning: the image of spec 'default' has Ray without its `default` extra"
    assert warning in built.stderr and fix in built.stderr, built.stderr
    assert built.stderr.index(warning) < built.stderr.index("raybake: building "), built.stderr
