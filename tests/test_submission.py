"""raybake.submission without the engine or a Ray cluster: what `raybake submit`
runs, and what it sends a cluster's dashboard (a stand-in serving Ray's job
endpoints); the engine and Ray parts run in test_ray_e2e.py."""

import asyncio
import io
import platform
import shutil
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as ray_version
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import EXAMPLE

from raybake import submission
from raybake.build import BuildResult
from raybake.planner import identities_for
from raybake.project import load_project


def test_submit_runs_the_image_it_checked_by_id_not_the_movable_tag(tmp_path, monkeypatch):
    """The tag may move between the check (ensure_image) and the run: the local head
    and the job's client run the checked image ID."""
    root = tmp_path / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    monkeypatch.setenv("RAYBAKE_BASE_IMAGE", "example.invalid/base:1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    checked = "sha256:" + "c" * 64
    ran: list[str] = []

    def ensure_image(project, plan, **kwargs):
        return BuildResult(spec=plan.spec.name, reference=plan.reference, status="up to date", image_id=checked,
                           digest_reference=None, size=None, seconds=0.0)

    @contextmanager
    def local_head(image, on_step):
        ran.append(image)
        yield SimpleNamespace(address="http://127.0.0.1:1")

    def submit_in_image(plan, image, staged, command, address, reporter):
        ran.append(image)
        return "job-1"

    monkeypatch.setattr(submission, "ensure_image", ensure_image)
    monkeypatch.setattr(submission, "check_lock", lambda project: True)
    monkeypatch.setattr(submission, "local_head", local_head)
    monkeypatch.setattr(submission, "_submit_in_image", submit_in_image)
    assert submission.submit(root, (), ["python", "main.py"]) == "job-1"
    assert ran == [checked, checked]


class FakeDashboard:
    """The job endpoints of a Ray dashboard (what JobSubmissionClient asks), on
    127.0.0.1 in a thread: records the packages uploaded and the jobs submitted;
    every job logs one line and succeeds. No Ray cluster is started."""

    def __init__(self) -> None:
        self.packages: dict[str, bytes] = {}
        self.jobs: list[dict] = []

    async def _version(self, request):
        from aiohttp import web

        return web.json_response({"version": "4", "ray_version": ray_version("ray"), "ray_commit": "fake"})

    async def _package(self, request):
        from aiohttp import web

        name = f"{request.match_info['protocol']}://{request.match_info['name']}"
        if request.method == "PUT":
            self.packages[name] = await request.read()
            return web.Response()
        return web.Response(status=200 if name in self.packages else 404)

    async def _submit(self, request):
        from aiohttp import web

        self.jobs.append(await request.json())
        return web.json_response({"job_id": "fake-1", "submission_id": "fake-1"})

    async def _tail(self, request):
        from aiohttp import web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello from the fake job\n")
        await ws.close()
        return ws

    async def _job(self, request):
        from aiohttp import web

        return web.json_response({"type": "SUBMISSION", "job_id": "fake-1", "submission_id": "fake-1",
                                  "status": "SUCCEEDED", "entrypoint": self.jobs[-1]["entrypoint"]})

    @contextmanager
    def serving(self) -> Iterator[str]:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/api/version", self._version)
        app.router.add_route("*", "/api/packages/{protocol}/{name}", self._package)
        app.router.add_post("/api/jobs/", self._submit)
        app.router.add_get("/api/jobs/{job}/logs/tail", self._tail)
        app.router.add_get("/api/jobs/{job}", self._job)
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()


def example_with_python(tmp_path) -> Path:
    """A copy of the example whose spec names this client's Python (so no image label is asked for)."""
    root = tmp_path / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    (root / "images/default.yaml").write_text(f'python: "{platform.python_version().rsplit(".", 1)[0]}"\n')
    return root


def test_submit_to_an_address_uploads_the_staged_tree_and_follows_the_job(tmp_path, monkeypatch):
    """`raybake submit --address`: raybake's Ray client uploads the staged tree
    (never the project directory) as working_dir and submits the job naming the image."""
    root = example_with_python(tmp_path)
    (root / ".env").write_text("AWS_SECRET_ACCESS_KEY=never-uploaded\n")
    monkeypatch.setenv("RAYBAKE_BASE_IMAGE", "example.invalid/base:1")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")  # nothing here may ask the engine
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    lines: list[str] = []

    def ensure_image(project, plan, **kwargs):
        return BuildResult(spec=plan.spec.name, reference=plan.reference, status="up to date",
                           image_id="sha256:" + "c" * 64, digest_reference=None, size=None, seconds=0.0)

    monkeypatch.setattr(submission, "ensure_image", ensure_image)
    monkeypatch.setattr(submission, "check_lock", lambda project: True)
    reporter = SimpleNamespace(step=lambda message: None, job_line=lines.append)
    dashboard = FakeDashboard()
    with dashboard.serving() as address:
        job = submission.submit(root, (), ["python", "main.py"], address=address, reporter=reporter)
    assert job == "fake-1" and lines == ["hello from the fake job"]
    (submitted,) = dashboard.jobs
    assert submitted["entrypoint"] == "/opt/venv/bin/python main.py"
    (package,) = dashboard.packages
    assert submitted["runtime_env"]["working_dir"] == package
    with zipfile.ZipFile(io.BytesIO(dashboard.packages[package])) as archive:
        names = set(archive.namelist())
    assert "main.py" in names and any(n.startswith("src/") for n in names)
    assert ".env" not in names and not any(n.startswith(".venv/") for n in names)
    (plan,) = identities_for(load_project(root))
    assert submitted["metadata"]["raybake.image"] == plan.reference


def test_submit_to_an_address_without_ray_here_says_which_to_install_before_building(tmp_path, monkeypatch,
                                                                                      capsys):
    import raybake.jobs
    from raybake.cli import main

    root = example_with_python(tmp_path)
    monkeypatch.setenv("RAYBAKE_BASE_IMAGE", "example.invalid/base:1")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    monkeypatch.setattr(raybake.jobs, "client_version", lambda: None)  # as without Ray installed

    def ensure_image(*args, **kwargs):
        raise AssertionError("built before refusing")

    monkeypatch.setattr(submission, "ensure_image", ensure_image)
    with FakeDashboard().serving() as address, pytest.raises(SystemExit) as exited:
        main(["submit", "-C", str(root), "--address", address, "--", "python", "main.py"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Ray is not installed where raybake runs" in err and "Traceback" not in err
    locked = next(p["version"] for p in tomllib.loads((root / "uv.lock").read_text())["package"]
                  if p["name"] == "ray")
    assert f"'ray[default]=={locked}'" in err  # the image's Ray, which the client must equal
