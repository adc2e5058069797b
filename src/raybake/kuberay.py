"""KubeRay manifests (RayJob, RayCluster) as plain data. Pure.

The shapes follow KubeRay's CRDs (ray.io/v1); tests validate them against the
CRD schemas of a KubeRay release (tests/data/kuberay). The defaults are a
starting point users edit: a fixed-size cluster, one worker group, requests
equal to limits (what Ray's KubeRay guide recommends), no autoscaler."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

API_VERSION = "ray.io/v1"
# KubeRay's own limits (ray-operator/controllers/ray/utils/constant.go): the
# operator derives pod and service names from these with suffixes.
MAX_RAYCLUSTER_NAME = 53
MAX_RAYJOB_NAME = MAX_RAYCLUSTER_NAME - 6
WORKER_GROUP = "workers"
WORKER_REPLICAS = 2
HEAD_RESOURCES = {"cpu": "1", "memory": "4Gi"}
WORKER_RESOURCES = {"cpu": "2", "memory": "8Gi"}
# Finished RayJobs delete their cluster, after a while to read its logs.
TTL_SECONDS_AFTER_FINISHED = 600


def resource_name(*parts: str, limit: int) -> str:
    """A DNS-1035 label KubeRay accepts as a RayJob/RayCluster name: lowercase
    letters, digits and '-', starting with a letter, at most ``limit`` long."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if not name[:1].isalpha():
        name = f"ray-{name}"
    return name[:limit].rstrip("-")


def resource_labels(project: str, spec: str) -> dict[str, str]:
    def value(text: str) -> str:  # a label value: at most 63 of [A-Za-z0-9._-], alphanumeric ends
        return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-._")

    return {"app.kubernetes.io/name": value(project), "app.kubernetes.io/component": value(spec)}


def _resources(amounts: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {"requests": dict(amounts), "limits": dict(amounts)}


def ray_cluster_spec(image: str, ray_version: str | None) -> dict[str, Any]:
    """spec of a RayCluster (and rayClusterSpec of a RayJob): every node runs ``image``.

    rayVersion must be the image's Ray (None: unknown, left out): KubeRay picks
    its health probes by it (HTTP probes from Ray 2.53; before, or unknown,
    probes exec `wget`, which raybake's images lack)."""
    return {
        **({"rayVersion": ray_version} if ray_version else {}),
        "headGroupSpec": {
            # No tasks on the head: on a large cluster it has enough to do with GCS and the driver.
            "rayStartParams": {"num-cpus": "0"},
            "template": {"spec": {"containers": [{
                "name": "ray-head",
                "image": image,
                "ports": [{"containerPort": 6379, "name": "gcs-server"},
                          {"containerPort": 8265, "name": "dashboard"},
                          {"containerPort": 10001, "name": "client"}],
                "resources": _resources(HEAD_RESOURCES),
            }]}},
        },
        "workerGroupSpecs": [{
            "groupName": WORKER_GROUP,
            # Without the autoscaler KubeRay requires both bounds; equal bounds: a fixed size.
            "replicas": WORKER_REPLICAS,
            "minReplicas": WORKER_REPLICAS,
            "maxReplicas": WORKER_REPLICAS,
            "rayStartParams": {},
            "template": {"spec": {"containers": [{
                "name": "ray-worker",
                "image": image,
                "resources": _resources(WORKER_RESOURCES),
            }]}},
        }],
    }


def ray_cluster(name: str, labels: Mapping[str, str], image: str, ray_version: str | None) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": ray_cluster_spec(image, ray_version),
    }


def ray_job(name: str, labels: Mapping[str, str], image: str, ray_version: str | None, *, entrypoint: str,
            runtime_env: Mapping[str, Any], metadata: Mapping[str, str]) -> dict[str, Any]:
    """A RayJob: KubeRay creates the cluster, its submitter pod (the head's image)
    runs `ray job submit --runtime-env-json ... -- ENTRYPOINT` inside it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "entrypoint": entrypoint,
            "runtimeEnvYAML": yaml.safe_dump(dict(runtime_env), sort_keys=True),
            "metadata": dict(metadata),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
            "rayClusterSpec": ray_cluster_spec(image, ray_version),
        },
    }
