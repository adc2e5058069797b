"""Images, layers and caches, for the measurements: raybake.tools.docker where
raybake has the call, the docker CLI through raybake.tools.run otherwise."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from common import capture

from raybake.tools import docker

EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
MANIFEST_TYPES = ", ".join(("application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json"))


def image_id(reference: str) -> str | None:
    return docker.local_image_id(reference)


def image_size(reference: str) -> int:
    return docker.image_size(reference) or 0


def image_layers(reference: str) -> list[tuple[str, int]]:
    """(diff ID, size in bytes) of each non-empty layer, lowest first.

    `docker history` lists the config's history newest first, empty layers
    (ENV, LABEL, ...) with size 0; the layers with content map in order onto
    RootFS.Layers without the empty-tar diff ID."""
    diff_ids = json.loads(capture(["docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", reference]))
    sizes = [int(s) for s in capture(["docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}",
                                      reference]).split()][::-1]
    nonzero = [s for s in sizes if s > 0]
    if len(diff_ids) == len(nonzero):  # an empty-tar layer (WORKDIR of an existing dir) has a size too
        return list(zip(diff_ids, nonzero))
    real = [d for d in diff_ids if d != EMPTY_LAYER]
    if len(real) != len(nonzero):  # cannot map: sizes unknown, count the layers only
        return [(d, -1) for d in real]
    return list(zip(real, nonzero))


def changed_layers(reference: str, previous: str) -> tuple[int, int]:
    """(number, bytes) of the layers of ``reference`` whose diff ID ``previous`` lacks."""
    before = {d for d, _ in image_layers(previous)}
    new = [(d, s) for d, s in image_layers(reference) if d not in before]
    return len(new), sum(max(s, 0) for _, s in new)


def unpacked_size(reference: str) -> int:
    return sum(max(s, 0) for _, s in image_layers(reference))


def images_matching(prefixes: tuple[str, ...]) -> list[str]:
    out = capture(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"])
    return [ref for ref in out.splitlines() if ref.startswith(prefixes) and not ref.endswith(":<none>")]


def remove_images(refs: list[str]) -> None:
    for ref in refs:
        docker.remove_image(ref)


def tag_and_push(reference: str, target: str) -> str:
    """``reference`` pushed as ``target``; the pushed digest reference."""
    docker.tag(reference, target)
    return docker.push(target)


def registry_manifest(reference: str) -> dict:
    """The manifest ``reference`` names in its (plain-HTTP, local) registry."""
    host, _, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def layer_blobs(reference: str) -> dict[str, int]:
    """Compressed layer blobs of ``reference`` in the registry: digest -> bytes (the config included)."""
    manifest = registry_manifest(reference)
    blobs = {layer["digest"]: int(layer["size"]) for layer in manifest["layers"]}
    blobs[manifest["config"]["digest"]] = int(manifest["config"]["size"])
    return blobs


def layer_types(reference: str) -> dict[str, str]:
    """Layer digest -> media type."""
    return {layer["digest"]: layer["mediaType"] for layer in registry_manifest(reference)["layers"]}


def layer_media_types(reference: str) -> list[str]:
    return sorted(set(layer_types(reference).values()))


def registry_blob(reference: str, digest: str, dest: Path) -> None:
    """Download one blob of ``reference``'s repository to ``dest``."""
    host, _, rest = reference.partition("/")
    repo = rest.rpartition(":")[0]
    with urllib.request.urlopen(f"http://{host}/v2/{repo}/blobs/{digest}", timeout=300) as resp, \
            dest.open("wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
