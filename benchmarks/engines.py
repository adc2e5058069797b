"""Throwaway engines for cold measurements: a dockerd and a registry of the
benchmark's own, with data under /var/tmp/raybake-heavy-*, so that a cold build
empties no cache of the shared engine (others' builds and test suites use it)
and removing one directory removes every image, build cache record and uv
cache mount the measurement made.

The daemon gets the shared engine's flags (buildkit/engine-up, and
engine_of_its_own in tests/test_buildcache.py); the base image comes in by
`docker save | docker load` (nothing can be pulled here). While an engine is
up, DOCKER_HOST points this process and every command it runs at it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from common import log, stop

HOME_PREFIX = "/var/tmp/raybake-heavy-"
MIN_FREE_GB = 25


def free_gb(path: str = "/") -> float:
    usage = shutil.disk_usage(path)
    return usage.free / 1e9


def check_disk(what: str, minimum: float = MIN_FREE_GB) -> None:
    """Stop before a heavy part when the disk is short: a torch image is about 10 GB unpacked."""
    free = free_gb()
    if free < minimum:
        raise DiskShort(f"only {free:.1f} GB free on / before {what} (at least {minimum} GB needed): "
                        f"stopped; free space (remove {HOME_PREFIX}* left by a killed run) and run again")
    log(f"disk: {free:.1f} GB free before {what}")


class DiskShort(RuntimeError):
    pass


class ThrowawayEngine:
    """A dockerd with an empty store and BuildKit cache holding only ``base_images``."""

    def __init__(self, name: str, base_images: tuple[str, ...]):
        self.home = Path(f"{HOME_PREFIX}{time.strftime('%H%M%S')}-{name}")
        self.base_images = base_images
        self.host = f"unix://{self.home}/docker.sock"
        self.daemon: subprocess.Popen | None = None
        self.previous_host: str | None = None

    def __enter__(self) -> ThrowawayEngine:
        if self.home.exists():
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True)
        shared = dict(os.environ)  # the engine the base images are in
        own = {**shared, "DOCKER_HOST": self.host}
        # Short names under home: the daemon's and containerd's socket paths must stay under 108 bytes.
        self.daemon = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--data-root", str(self.home / "d"),
             "--exec-root", str(self.home / "x"), "--pidfile", str(self.home / "pid"), "--host", self.host],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.home / "dockerd.log", "wb"),
            start_new_session=True)
        try:
            for _ in range(240):
                if subprocess.run(["docker", "info"], env=own, capture_output=True).returncode == 0:
                    break
                if self.daemon.poll() is not None:
                    raise RuntimeError(f"dockerd exited: {(self.home / 'dockerd.log').read_text()[-1000:]}")
                time.sleep(0.25)
            else:
                raise RuntimeError(f"the throwaway dockerd did not answer: {(self.home / 'dockerd.log').read_text()[-1000:]}")
            for image in self.base_images:
                saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, env=shared)
                loaded = subprocess.run(["docker", "load"], stdin=saved.stdout, env=own, capture_output=True, text=True)
                saved.stdout.close()
                if saved.wait() != 0 or loaded.returncode != 0:
                    raise RuntimeError(f"loading {image} into the throwaway engine failed: {loaded.stderr[-500:]}")
        except BaseException:
            self.__exit__()
            raise
        self.previous_host = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = self.host
        log(f"throwaway engine up: {self.home}")
        return self

    def __exit__(self, *exc: object) -> None:
        if os.environ.get("DOCKER_HOST") == self.host:
            if self.previous_host is None:
                os.environ.pop("DOCKER_HOST")
            else:
                os.environ["DOCKER_HOST"] = self.previous_host
        if self.daemon is not None:
            own = {**os.environ, "DOCKER_HOST": self.host}
            # Its containers first (Ray nodes): dockerd stops them on exit, but not always within its wait.
            ids = subprocess.run(["docker", "ps", "-aq"], env=own, capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], env=own, capture_output=True)
            stop(self.daemon, timeout=120)  # it stops its containerd with it
        # Mounts of the overlay snapshotter are gone with containerd; a leftover one would make rmtree fail.
        subprocess.run(["sh", "-c", f"grep -o ' {self.home}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
        log(f"throwaway engine removed: {self.home}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRegistry:
    """Debian's docker-registry on 127.0.0.1 (insecure-allowed), its storage under /var/tmp/raybake-heavy-*."""

    def __init__(self, name: str = "registry"):
        self.home = Path(f"{HOME_PREFIX}{time.strftime('%H%M%S')}-{name}")
        self.address = f"127.0.0.1:{_free_port()}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ThrowawayRegistry:
        self.home.mkdir(parents=True)
        config = self.home / "registry.yml"
        config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {self.home}/data\n"
                          f"  delete:\n    enabled: true\nhttp:\n  addr: {self.address}\nlog:\n  level: warn\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.home / "registry.log", "wb"),
                                     start_new_session=True)
        host, port = self.address.split(":")
        for _ in range(120):
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"the throwaway registry did not start: {(self.home / 'registry.log').read_text()[-500:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.home, ignore_errors=True)

    def size_gb(self) -> float:
        total = sum(f.stat().st_size for f in (self.home / "data").rglob("*") if f.is_file())
        return total / 1e9
