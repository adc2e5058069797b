"""Ray: job submission through the dashboard's JobSubmissionClient.

Ray is an optional dependency (``raybake[ray]``) and imported only here, only
when a job is submitted: it takes seconds to import."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from raybake.errors import JobFailed, ToolError

log = logging.getLogger("raybake.ray")
RAY_FIX = "install Ray where raybake runs, the same version as the image's: `uv pip install 'ray[default]==VERSION'`"


def client_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:  # noqa: BLE001 - not installed
        return None


def wait_for_dashboard(address: str, *, timeout: float, is_alive: Callable[[], bool] = lambda: True) -> None:
    """Poll the dashboard's version endpoint until it answers."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not is_alive():
            raise ToolError(f"the Ray head at {address} stopped while starting")
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2) as resp:
                json.loads(resp.read())
                return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise ToolError(f"the Ray dashboard at {address} did not answer within {timeout:.0f} s ({last})")


def alive_nodes(address: str) -> int:
    """How many nodes of the cluster behind the dashboard ``address`` are alive (0 while it cannot say)."""
    try:
        with urllib.request.urlopen(f"{address}/api/v0/nodes?limit=1000", timeout=5) as resp:
            nodes = json.loads(resp.read())["data"]["result"]["result"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return 0
    return sum(1 for node in nodes if node.get("state") == "ALIVE")


def submit_and_follow(address: str, *, entrypoint: str, runtime_env: Mapping[str, Any],
                      metadata: Mapping[str, str], on_log: Callable[[str], None],
                      head_outlives_job: bool = True) -> str:
    """Submit a job, stream its logs, return its final status; JobFailed unless it succeeded.

    ``head_outlives_job``: False for a head raybake stops afterwards, whose
    logs cannot be asked for again."""
    try:
        from ray.job_submission import JobStatus, JobSubmissionClient
    except ImportError as exc:
        raise ToolError("Ray is not installed in raybake's environment", fix=RAY_FIX) from exc
    client = JobSubmissionClient(address)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=dict(runtime_env), metadata=dict(metadata))
    log.debug("submitted %s", job_id)

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            for line in chunk.splitlines():
                on_log(line)

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        info = client.get_job_info(job_id)
        again = (f"; `ray job logs {job_id} --address {address}` shows it again" if head_outlives_job
                 else " (the local Ray head has been stopped with the job)")
        raise JobFailed(f"Ray job {job_id} ended {status.value}: {info.message or ''}".strip(),
                        fix=f"read the job's log above{again}")
    return job_id
