"""A local multi-node Ray cluster: one head and worker containers from one image.

What a large cluster does, on one machine: every node is a container of the
same image (so every node runs the image's environment), work is spread by a
custom resource per node, and jobs reach the head as on any cluster. Host
network (these daemons have no bridge) with every Ray port of every node
chosen free, so the nodes collide neither with each other nor with anything
else on the machine."""

from __future__ import annotations

import json
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from raybake.contract import VENV_BIN
from raybake.errors import ToolError
from raybake.tools import docker
from raybake.tools.ray import alive_nodes, wait_for_dashboard

START_TIMEOUT = 180.0  # head and workers on a busy 2-core machine
NODE_PORTS = ("node-manager-port", "object-manager-port", "runtime-env-agent-port",
              "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port")
HEAD_PORTS = ("port", "dashboard-port", "ray-client-server-port")
WORKER_PORT_RANGE = 100  # worker processes per node; each node gets its own block
# Enough units that any number of tasks or actors asking for 1 fit: the
# resource pins work to a node, it does not limit it (CPUs do).
NODE_RESOURCE_UNITS = 10_000
OBJECT_STORE_BYTES = 256 * 2**20  # Ray would take 30 % of the machine's memory per node


def node_resource(index: int) -> str:
    """The custom resource only node ``index`` (0 = head) has: ``resources={name: 1}`` puts work there."""
    return f"node_{index}"


@dataclass(frozen=True)
class LocalCluster:
    address: str  # the head's dashboard (job submission)
    gcs_address: str  # host:port the workers joined
    containers: tuple[str, ...]  # head first
    node_resources: tuple[str, ...]  # node_resource(i) of each container

    @property
    def nodes(self) -> int:
        return len(self.containers)


def _worker_ports(first: int) -> list[str]:
    return [f"--min-worker-port={first}", f"--max-worker-port={first + WORKER_PORT_RANGE - 1}"]


def _node_args(index: int, cpus: int, worker_ports: int) -> list[str]:
    ports = free_ports(NODE_PORTS)
    return ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--num-cpus={cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--resources={json.dumps({node_resource(index): NODE_RESOURCE_UNITS})}",
            *(f"--{k}={v}" for k, v in ports.items()), *_worker_ports(worker_ports)]


@contextmanager
def local_cluster(image: str, *, workers: int = 2, cpus_per_node: int = 2,
                  env: Mapping[str, str] | None = None, mounts: tuple[tuple[Path, str], ...] = (),
                  on_step: Callable[[str], None] = lambda message: None) -> Iterator[LocalCluster]:
    """A head and ``workers`` worker nodes inside ``image``, all removed afterwards.

    Yields once every node has joined. ``env`` and ``mounts`` (read-only,
    host path to container path) go to every node: Ray's runtime_env agent
    and the worker processes inherit the node's environment."""
    head_ports = free_ports(HEAD_PORTS)
    gcs = f"127.0.0.1:{head_ports['port']}"
    address = f"http://127.0.0.1:{head_ports['dashboard-port']}"
    # Worker-port blocks below the ephemeral range, one per node, from a random
    # start so two clusters on the machine are unlikely to share one.
    first = random.randrange(10_002, 30_000 - (workers + 1) * WORKER_PORT_RANGE, WORKER_PORT_RANGE)
    stamp = uuid.uuid4().hex[:8]
    containers: list[str] = []

    def start(index: int, role_args: list[str]) -> None:
        name = f"raybake-node{index}-{stamp}"
        command = [f"{VENV_BIN}/ray", "start", *role_args,
                   *_node_args(index, cpus_per_node, first + index * WORKER_PORT_RANGE)]
        containers.append(docker.run_detached(image, command, name=name, env=env, mounts=mounts))

    docker.remove_orphaned_containers()  # a killed raybake's nodes would hold memory and ports
    try:
        on_step(f"starting a local Ray cluster in {image}: a head and {workers} workers ({address})")
        start(0, ["--head", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
                  *(f"--{k}={v}" for k, v in head_ports.items())])
        try:
            wait_for_dashboard(address, timeout=START_TIMEOUT, is_alive=lambda: docker.container_running(containers[0]))
        except ToolError as exc:
            raise ToolError(f"{exc.message}\nthe head's last log lines:\n{docker.container_logs(containers[0])}",
                            fix="check that the image has ray[default] and that these ports are free") from None
        for index in range(1, workers + 1):
            start(index, [f"--address={gcs}"])
        _wait_for_nodes(address, workers + 1, containers)
        yield LocalCluster(address, gcs, tuple(containers),
                           tuple(node_resource(i) for i in range(workers + 1)))
    finally:
        on_step("stopping the local Ray cluster")
        for container in reversed(containers):
            docker.remove_container(container)


def _wait_for_nodes(address: str, expected: int, containers: list[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    count = 0
    while time.monotonic() < deadline:
        stopped = [c for c in containers if not docker.container_running(c)]
        if stopped:
            raise ToolError(f"a Ray node stopped while joining; its last log lines:\n"
                            f"{docker.container_logs(stopped[0])}",
                            fix="check that the image has ray[default] and that these ports are free")
        count = alive_nodes(address)
        if count >= expected:
            return
        time.sleep(0.5)
    raise ToolError(f"only {count} of {expected} Ray nodes joined within {START_TIMEOUT:.0f} s",
                    fix="the machine may be overloaded: use fewer workers")


HEAD_START_TIMEOUT = 120


def free_ports(names: Iterable[str]) -> dict[str, int]:
    """A port on 127.0.0.1 that nothing listens on right now for each name, all
    different: every socket stays bound until all are chosen (one by one, the
    system may hand out a port it just gave again)."""
    with ExitStack() as stack:
        sockets = {name: stack.enter_context(socket.socket()) for name in names}
        for s in sockets.values():
            s.bind(("127.0.0.1", 0))
        return {name: s.getsockname()[1] for name, s in sockets.items()}


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(["port"])["port"]


@dataclass(frozen=True)
class LocalHead:
    container_id: str
    address: str  # the dashboard's http address


@contextmanager
def local_head(image: str, *, env: Mapping[str, str] | None = None,
               on_step=lambda message: None) -> Iterator[LocalHead]:
    """A one-node Ray cluster inside ``image`` on loopback, removed afterwards.

    Host networking (no bridge on these daemons) and free ports, so that it
    collides with nothing; every port Ray opens is chosen, none left at its
    default. ``env`` reaches Ray's processes (e.g. where to fetch working_dir from)."""
    ports = free_ports((
        "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
        "node-manager-port", "object-manager-port"))
    command = [f"{VENV_BIN}/ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", "--disable-usage-stats", "--include-dashboard=true",
               *(f"--{k}={v}" for k, v in ports.items())]
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    on_step(f"starting a local Ray head in {image} ({address})")
    if removed := docker.remove_orphaned_containers():  # a killed `raybake submit`'s head and job client
        on_step(f"removed {len(removed)} container(s) left by a raybake that was killed")
    container = docker.run_detached(image, command, name=f"raybake-head-{uuid.uuid4().hex[:10]}", env=env)
    try:
        try:
            wait_for_dashboard(address, timeout=HEAD_START_TIMEOUT,
                               is_alive=lambda: docker.container_running(container))
        except ToolError as exc:
            raise ToolError(f"{exc.message}\nthe head's last log lines:\n{docker.container_logs(container)}",
                            fix="check that the image has ray[default] and that these ports are free") from None
        yield LocalHead(container, address)
    finally:
        on_step("stopping the local Ray head")
        docker.remove_container(container)
