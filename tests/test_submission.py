"""raybake.submission, pure: what `raybake submit` runs (the engine and Ray
parts run in test_ray_e2e.py)."""

import shutil
from contextlib import contextmanager
from types import SimpleNamespace

from conftest import EXAMPLE

from raybake import submission
from raybake.build import BuildResult


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
