"""KubeRay manifests (RayJob, RayCluster, RayService, a pre-pull DaemonSet) as plain data. Pure.

The shapes follow KubeRay's CRDs (ray.io/v1); tests validate them against the
CRD schemas of a KubeRay release (tests/data/kuberay). The defaults are a
starting point users edit: a fixed-size cluster, one worker group, requests
equal to limits (what Ray's KubeRay guide recommends), no autoscaler."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
# KubeRay's default submitter container (ray-operator/controllers/ray/common/job.go),
# written out when the submitter pod needs pull secrets or a service account too.
SUBMITTER_CONTAINER = "ray-job-submitter"
SUBMITTER_RESOURCES = {"requests": {"cpu": "500m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PREPULL_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


@dataclass(frozen=True)
class PodOptions:
    """Where the manifests go and what their pods run as: the same for every pod."""

    namespace: str | None = None
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()

    def metadata(self, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"name": name, **({"namespace": self.namespace} if self.namespace else {}), "labels": dict(labels)}

    def pod_spec(self, containers: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return {
            **({"serviceAccountName": self.service_account} if self.service_account else {}),
            **({"imagePullSecrets": [{"name": s} for s in self.image_pull_secrets]}
               if self.image_pull_secrets else {}),
            **fields,
            "containers": containers,
        }


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


def ray_cluster_spec(image: str, ray_version: str | None, pods: PodOptions = PodOptions()) -> dict[str, Any]:
    """spec of a RayCluster (and rayClusterSpec of a RayJob): every node runs ``image``.

    rayVersion must be the image's Ray (None: unknown, left out): KubeRay picks
    its health probes by it (HTTP probes from Ray 2.53; before, or unknown,
    probes exec `wget`, which raybake's images lack)."""
    return {
        **({"rayVersion": ray_version} if ray_version else {}),
        "headGroupSpec": {
            # No tasks on the head: on a large cluster it has enough to do with GCS and the driver.
            "rayStartParams": {"num-cpus": "0"},
            "template": {"spec": pods.pod_spec([{
                "name": "ray-head",
                "image": image,
                "ports": [{"containerPort": 6379, "name": "gcs-server"},
                          {"containerPort": 8265, "name": "dashboard"},
                          {"containerPort": 10001, "name": "client"}],
                "resources": _resources(HEAD_RESOURCES),
            }])},
        },
        "workerGroupSpecs": [{
            "groupName": WORKER_GROUP,
            # Without the autoscaler KubeRay requires both bounds; equal bounds: a fixed size.
            "replicas": WORKER_REPLICAS,
            "minReplicas": WORKER_REPLICAS,
            "maxReplicas": WORKER_REPLICAS,
            "rayStartParams": {},
            "template": {"spec": pods.pod_spec([{
                "name": "ray-worker",
                "image": image,
                "resources": _resources(WORKER_RESOURCES),
            }])},
        }],
    }


def ray_cluster(name: str, labels: Mapping[str, str], image: str, ray_version: str | None,
                pods: PodOptions = PodOptions()) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": pods.metadata(name, labels),
        "spec": ray_cluster_spec(image, ray_version, pods),
    }


def ray_job(name: str, labels: Mapping[str, str], image: str, ray_version: str | None, *, entrypoint: str,
            runtime_env: Mapping[str, Any], metadata: Mapping[str, str],
            pods: PodOptions = PodOptions()) -> dict[str, Any]:
    """A RayJob: KubeRay creates the cluster, its submitter pod (the head's image)
    runs `ray job submit --runtime-env-json ... -- ENTRYPOINT` inside it."""
    # KubeRay's default submitter pod has neither pull secrets nor a service account:
    # with either, the submitter is written out as KubeRay's default plus them.
    submitter = ({"submitterPodTemplate": {"spec": pods.pod_spec(
        [{"name": SUBMITTER_CONTAINER, "image": image, "resources": SUBMITTER_RESOURCES}], restartPolicy="Never")}}
        if pods.image_pull_secrets or pods.service_account else {})
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": pods.metadata(name, labels),
        "spec": {
            "entrypoint": entrypoint,
            "runtimeEnvYAML": yaml.safe_dump(dict(runtime_env), sort_keys=True),
            "metadata": dict(metadata),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
            **submitter,
            "rayClusterSpec": ray_cluster_spec(image, ray_version, pods),
        },
    }


def ray_service(name: str, labels: Mapping[str, str], image: str, ray_version: str | None, *,
                application: str, import_path: str, runtime_env: Mapping[str, Any],
                pods: PodOptions = PodOptions()) -> dict[str, Any]:
    """A RayService: KubeRay starts the cluster and deploys the Serve
    application ``import_path`` (MODULE:APP) with its source from runtime_env's working_dir."""
    serve_config = {"applications": [{
        "name": application,
        "import_path": import_path,
        "route_prefix": "/",
        "runtime_env": dict(runtime_env),
    }]}
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": pods.metadata(name, labels),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": ray_cluster_spec(image, ray_version, pods),
        },
    }


def prepull_daemon_set(name: str, labels: Mapping[str, str], images: Sequence[tuple[str, str]],
                       pods: PodOptions = PodOptions()) -> dict[str, Any]:
    """A DaemonSet that puts ``images`` ((spec, image) pairs) on every node
    before a Ray pod needs them: each image is an init container that exits at
    once, `pause` holds the pod (and so the images) in place."""
    selector = {**labels, "app.kubernetes.io/component": "prepull"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": pods.metadata(name, selector),
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "template": {
                "metadata": {"labels": dict(selector)},
                "spec": pods.pod_spec(
                    [{"name": "pause", "image": PAUSE_IMAGE, "resources": PREPULL_RESOURCES}],
                    # Every node, GPU nodes with their taints included.
                    tolerations=[{"operator": "Exists"}],
                    initContainers=[{"name": resource_name("prepull", spec, limit=63), "image": image,
                                     "command": ["/bin/sh", "-c", "true"], "resources": PREPULL_RESOURCES}
                                    for spec, image in images]),
            },
        },
    }
