"""Ray: job submission through the dashboard's JobSubmissionClient.

Ray is an optional dependency (``raybake[ray]``) and imported only here, only
when a job is submitted: it takes seconds to import."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from raybake.errors import JobFailed, ToolError
from raybake.settings import RAY_TIMEOUT

log = logging.getLogger("raybake.ray")


def install_ray(version: str) -> str:
    """The command that puts Ray ``version`` where raybake runs. A `uv tool`
    install (uv writes uv-receipt.toml into the tool's environment) is changed
    by installing the tool again with it; any other environment by uv pip."""
    if (Path(sys.prefix) / "uv-receipt.toml").is_file():
        return f"uv tool install raybake --with 'ray[default]=={version}'"
    return f"uv pip install --python {sys.executable} 'ray[default]=={version}'"


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


def _not_ray_fix(address: str) -> str:
    return (f"check that {address} is a Ray cluster's dashboard (`ray job list --address {address}`; port 8265 "
            f"by default, e.g. http://HEAD:8265) and that it is up; for a slow link raise {RAY_TIMEOUT.variable}")


def connect(address: str):
    """A JobSubmissionClient of the cluster at ``address`` whose every request
    is bounded by RAYBAKE_RAY_TIMEOUT (connect, and each wait for an answer):
    Ray's own sends them with no limit, so a server that accepts and never
    answers would hold raybake forever. Anything but a Ray dashboard's answer
    is a ToolError."""
    try:
        import requests
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ToolError("Ray is not installed in raybake's environment",
                        fix=f"install the image's Ray where raybake runs: `{install_ray('VERSION')}`") from exc
    timeout = RAY_TIMEOUT.value()

    class BoundedClient(JobSubmissionClient):
        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", timeout)
            return super()._do_request(method, endpoint, **kwargs)

    try:
        return BoundedClient(address)
    except requests.exceptions.Timeout:
        raise ToolError(f"the Ray dashboard at {address} did not answer within {timeout:.0f} s",
                        fix=_not_ray_fix(address)) from None
    except ConnectionError as exc:  # Ray's, for a refused or timed-out connection
        raise ToolError(f"cannot connect to a Ray dashboard at {address} (within {timeout:.0f} s): {exc}",
                        fix=_not_ray_fix(address)) from None
    except (requests.exceptions.RequestException, ValueError, KeyError, TypeError, RuntimeError) as exc:
        # An HTML page, a 404, JSON without ray_version: something else listens there.
        summary = (str(exc).splitlines() or [""])[0][:200]
        raise ToolError(f"{address} does not answer as a Ray dashboard ({type(exc).__name__}: {summary})",
                        fix=_not_ray_fix(address)) from None


def submit_and_follow(address: str, *, entrypoint: str, runtime_env: Mapping[str, Any],
                      metadata: Mapping[str, str], on_log: Callable[[str], None],
                      head_outlives_job: bool = True) -> str:
    """Submit a job, stream its logs, return its final status; JobFailed unless it succeeded.

    ``head_outlives_job``: False for a head raybake stops afterwards, whose
    logs cannot be asked for again."""
    client = connect(address)
    import requests
    from ray.job_submission import JobStatus

    job_id = None
    try:
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
        info = client.get_job_info(job_id) if status != JobStatus.SUCCEEDED else None
    except requests.exceptions.RequestException as exc:
        where = f"; job {job_id} may still run: `ray job status {job_id} --address {address}`" if job_id else ""
        raise ToolError(f"the Ray dashboard at {address} stopped answering ({type(exc).__name__}){where}",
                        fix=_not_ray_fix(address)) from None
    if info is not None:
        again = (f"; `ray job logs {job_id} --address {address}` shows it again" if head_outlives_job
                 else " (the local Ray head has been stopped with the job)")
        raise JobFailed(f"Ray job {job_id} ended {status.value}: {info.message or ''}".strip(),
                        fix=f"read the job's log above{again}")
    return job_id
