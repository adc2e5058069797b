"""The signed verification statement: DSSE envelope, statement checks, keys (pure),
checked by an independent DSSE implementation (securesystemslib)."""

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from raybake.errors import SettingError
from raybake.signing import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    check_attestations,
    key_pair_mismatch,
    load_signing_key,
    load_verification_key,
    pae,
    signing_key,
    statement_problem,
    verification_key,
    verification_statement,
)

DIGEST = "sha256:" + "ab" * 32
INPUT_HASH = "0123456789abcdef" * 4


def private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def pair():
    key = ec.generate_private_key(ec.SECP256R1())
    return load_signing_key(private_pem(key), "test"), load_verification_key(public_pem(key), "test.pub")


def statement(**changes):
    fields = {"repository": "127.0.0.1:5000/app", "digest": DIGEST, "input_hash": INPUT_HASH,
              "lock_sha256": "cd" * 32, "spec": "default", "image_id": "sha256:" + "ef" * 32,
              "raybake_version": "0.1.0"} | changes
    return verification_statement(**fields)


def independent_check(envelope: bytes, public: bytes) -> bytes:
    """securesystemslib's own PAE and ECDSA check (as cosign's go-securesystemslib does)."""
    key = SSlibKey("", "ecdsa", "ecdsa-sha2-nistp256", {"public": public.decode()})
    parsed = Envelope.from_dict(json.loads(envelope))
    assert parsed.verify([key], 1)
    return parsed.payload


def test_pae_is_dsse_v1():
    # The DSSE specification's own example (protocol.md).
    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_the_envelope_is_an_in_toto_statement_an_independent_verifier_accepts(pair):
    signer, verifier = pair
    envelope = signer.envelope(statement())
    data = json.loads(envelope)
    assert data["payloadType"] == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    assert [s["keyid"] for s in data["signatures"]] == [""]
    public = public_pem(signer.private_key)
    payload = json.loads(independent_check(envelope, public))
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert payload["predicateType"] == PREDICATE_TYPE
    assert payload["subject"] == [{"name": "127.0.0.1:5000/app", "digest": {"sha256": "ab" * 32}}]
    assert payload["predicate"]["result"] == "passed"
    assert payload["predicate"]["input_hash"] == INPUT_HASH
    assert payload["predicate"]["lock_sha256"] == "cd" * 32
    found = check_attestations([envelope], verifier, DIGEST, INPUT_HASH)
    assert found.ok and found.statement == payload and found.problems == ()
    # The in-toto attestation framework's own Statement (protobuf JSON, strict on unknown
    # fields, as cosign's Go `attestation.Statement` reads it) accepts the payload.
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    parsed = Statement.copy_from_pb(json_format.Parse(json.dumps(payload), statement_pb2.Statement()))
    parsed.validate()
    assert parsed.pb.predicate_type == PREDICATE_TYPE and parsed.pb.subject[0].digest["sha256"] == "ab" * 32


def test_a_tampered_payload_or_signature_is_refused(pair):
    signer, verifier = pair
    data = json.loads(signer.envelope(statement()))
    forged = dict(data, payload=base64.b64encode(json.dumps(statement(input_hash="f" * 64)).encode()).decode())
    sig = bytearray(base64.b64decode(data["signatures"][0]["sig"]))
    sig[-1] ^= 1
    flipped = dict(data, signatures=[{"keyid": "", "sig": base64.b64encode(bytes(sig)).decode()}])
    public = public_pem(signer.private_key)
    for bad in (forged, flipped):
        envelope = json.dumps(bad).encode()
        with pytest.raises(VerificationError):
            independent_check(envelope, public)
        found = check_attestations([envelope], verifier, DIGEST, INPUT_HASH)
        assert not found.ok
        assert found.problems == (f"attestation 1: no signature in it verifies with {verifier.describe()}",)


def test_another_key_or_payload_type_is_refused(pair):
    signer, verifier = pair
    other = load_signing_key(private_pem(ec.generate_private_key(ec.SECP256R1())), "other")
    assert "no signature in it verifies" in check_attestations(
        [other.envelope(statement())], verifier, DIGEST, INPUT_HASH).problems[0]
    data = json.loads(signer.envelope(statement()))
    data["payloadType"] = "application/json"
    assert "payloadType is 'application/json'" in check_attestations(
        [json.dumps(data).encode()], verifier, DIGEST, INPUT_HASH).problems[0]
    assert "not a DSSE envelope" in check_attestations([b"{}"], verifier, DIGEST, INPUT_HASH).problems[0]
    assert check_attestations([], verifier, DIGEST, INPUT_HASH).problems == ("no attestation is attached",)


def test_a_signed_statement_counts_only_for_its_digest_and_input_hash(pair):
    signer, verifier = pair
    assert statement_problem(statement(), DIGEST, INPUT_HASH) is None
    assert statement_problem(statement(), DIGEST, INPUT_HASH[:16]) is None  # a tag's 16 digits
    assert "another image" in statement_problem(statement(digest="sha256:" + "00" * 32), DIGEST, INPUT_HASH)
    assert "input hash" in statement_problem(statement(input_hash="f" * 64), DIGEST, INPUT_HASH)
    failed = statement()
    failed["predicate"]["result"] = "failed"
    assert "result is 'failed'" in statement_problem(failed, DIGEST, INPUT_HASH)
    other = dict(statement(), predicateType="https://slsa.dev/provenance/v1")
    assert "not raybake's verification statement" in statement_problem(other, DIGEST, INPUT_HASH)
    # Among several attached, the one that matches counts; the others' problems are named when none does.
    envelopes = [signer.envelope(statement(input_hash="f" * 64)), signer.envelope(statement())]
    assert check_attestations(envelopes, verifier, DIGEST, INPUT_HASH).ok
    found = check_attestations(envelopes[:1], verifier, DIGEST, INPUT_HASH)
    assert found.problems == (f"attestation 1: signed, but it was signed for the input hash {'f' * 64}, "
                              f"the plan's is {INPUT_HASH}",)


def test_keys_must_be_p256(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for key in (rsa_key, p384):
        with pytest.raises(SettingError, match="not an ECDSA P-256 private key"):
            load_signing_key(private_pem(key), "k")
        with pytest.raises(SettingError, match="not an ECDSA P-256 public key"):
            load_verification_key(public_pem(key), "k")
    p256 = ec.generate_private_key(ec.SECP256R1())
    encrypted = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(SettingError, match="encrypted"):
        load_signing_key(encrypted, "k")
    with pytest.raises(SettingError, match="not a PEM private key"):
        load_signing_key(public_pem(p256), "k")
    # SEC1 ("EC PRIVATE KEY", openssl ecparam's own output) reads too.
    sec1 = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    assert load_signing_key(sec1, "k").verification_key().fingerprint == \
        load_verification_key(public_pem(p256), "k").fingerprint


def test_where_the_keys_come_from(tmp_path, copy_fixture):
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "signing.pem").write_bytes(private_pem(key))
    assert signing_key(None, {}) is None
    from_env = signing_key(None, {"RAYBAKE_SIGNING_KEY": private_pem(key).decode()})
    from_file = signing_key(tmp_path / "signing.pem", {"RAYBAKE_SIGNING_KEY": "ignored: the file wins"})
    assert from_env.source == "RAYBAKE_SIGNING_KEY" and from_file.source.startswith("--signing-key ")
    with pytest.raises(SettingError, match="cannot read"):
        signing_key(tmp_path / "missing.pem", {})

    from raybake.project import load_project

    root = copy_fixture("small")
    (root / "keys").mkdir()
    (root / "keys" / "raybake.pub").write_bytes(public_pem(key))
    assert verification_key(load_project(root), {}) is None
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[tool.raybake]\nverification_key = "keys/raybake.pub"\n')
    configured = verification_key(load_project(root), {})
    assert configured.fingerprint == from_env.verification_key().fingerprint
    assert "[tool.raybake] verification_key" in configured.source
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "other.pub").write_bytes(public_pem(other))
    overridden = verification_key(load_project(root), {"RAYBAKE_VERIFICATION_KEY": str(tmp_path / "other.pub")})
    assert overridden.source.startswith("RAYBAKE_VERIFICATION_KEY=")
    assert key_pair_mismatch(from_env, configured) is None
    assert "is not the pair of the verification key" in key_pair_mismatch(from_env, overridden)


# On the real engine and registry: `build --push` signs, `verify --attestation`
# checks, and with a verification key a registry image counts only when signed.

@pytest.fixture(scope="module")
def signed_push(engine, repositories, tmp_path_factory):
    """tests/fixtures/small built, verified, pushed and signed once for this module:
    (root, env with the signing and verification keys, tag reference, digest reference, public key file)."""
    import re
    import shutil

    from conftest import FIXTURES
    from helpers import raybake

    base = tmp_path_factory.mktemp("signed")
    root = base / "small"
    shutil.copytree(FIXTURES / "small", root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    key = ec.generate_private_key(ec.SECP256R1())
    (base / "raybake.pub").write_bytes(public_pem(key))
    repo = f"{engine.registry}/{repositories('signed')}"
    env = engine.env(RAYBAKE_REPOSITORY=repo, RAYBAKE_SIGNING_KEY=private_pem(key).decode(),
                     RAYBAKE_VERIFICATION_KEY=str(base / "raybake.pub"))
    out = raybake("build", "--push", "-C", str(root), env=env).stdout
    reference = out.split()[0]
    digest_ref = re.search(rf"{re.escape(repo)}@sha256:[0-9a-f]{{64}}", out).group(0)
    return root, env, reference, digest_ref, base / "raybake.pub"


def _registry_url(engine, digest_ref: str, kind: str, what: str) -> str:
    repo = digest_ref.split("@")[0]
    return f"http://{engine.registry}/v2/{repo.split('/', 1)[1]}/{kind}/{what}"


def _get(url: str, accept: str = "application/vnd.oci.image.manifest.v1+json") -> bytes:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=30) as response:
        return response.read()


def _put_manifest(url: str, body: bytes) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(request, timeout=30).close()


@pytest.mark.engine
@pytest.mark.registry
def test_build_push_signs_where_cosign_looks_and_verify_attestation_checks_it(signed_push, engine, tmp_path):
    from helpers import docker, raybake

    root, env, reference, digest_ref, public = signed_push
    digest = digest_ref.split("@")[1]
    report = json.loads(raybake("verify", "--attestation", reference, "--json", "-C", str(root), env=env).stdout)
    label = json.loads(docker("buildx", "imagetools", "inspect", "--format", "{{json .Image}}",
                              reference).stdout)["config"]["Labels"]["dev.raybake.input-hash"]
    assert report["ok"] and report["findings"] == [] and report["digest"] == digest
    assert report["statement"]["predicate"]["input_hash"] == label == report["input_hash"]
    assert report["statement"]["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
    # cosign's attestation image: sha256-HEX.att, a DSSE layer with cosign's annotations,
    # which an independent DSSE implementation verifies with the public key.
    manifest = json.loads(_get(_registry_url(engine, digest_ref, "manifests", digest.replace(":", "-") + ".att")))
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"] == {"dev.cosignproject.cosign/signature": "", "predicateType": PREDICATE_TYPE}
    config = json.loads(_get(_registry_url(engine, digest_ref, "blobs", manifest["config"]["digest"])))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]
    envelope = _get(_registry_url(engine, digest_ref, "blobs", layer["digest"]))
    assert json.loads(independent_check(envelope, public.read_bytes())) == report["statement"]
    # The skip decision takes the signed image (and signs nothing again); another key's check fails.
    again = raybake("build", "--push", "-C", str(root), env=env).stdout
    assert "up to date" in again
    assert len(json.loads(_get(_registry_url(engine, digest_ref, "manifests",
                                             digest.replace(":", "-") + ".att")))["layers"]) == 1
    (tmp_path / "other.pub").write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    proc = raybake("verify", "--attestation", reference, "--key", str(tmp_path / "other.pub"), "-C", str(root),
                   env=env, check=False)
    assert proc.returncode == 1 and "no signature in it verifies with the key" in proc.stdout
    # pin --require-present takes it too (on a copy: the pin file stays out of the module's project).
    import shutil

    shutil.copytree(root, tmp_path / "pinned")
    raybake("pin", "-C", str(tmp_path / "pinned"), env=env, check=False)  # writes the pin (exit 1: rewritten)
    assert raybake("pin", "--require-present", "-C", str(tmp_path / "pinned"), env=env).returncode == 0


def test_a_signing_key_that_is_not_the_verification_keys_pair_is_refused_before_building(copy_fixture, tmp_path):
    from helpers import raybake

    root = copy_fixture("small")
    (tmp_path / "raybake.pub").write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    env = {**os.environ, "RAYBAKE_SIGNING_KEY": private_pem(ec.generate_private_key(ec.SECP256R1())).decode(),
           "RAYBAKE_VERIFICATION_KEY": str(tmp_path / "raybake.pub"), "DOCKER_HOST": "unix:///nonexistent"}
    proc = raybake("build", "--push", "-C", str(root), env=env, check=False)
    assert proc.returncode == 2 and "is not the pair of the verification key" in proc.stderr, proc.stderr


@pytest.mark.engine
@pytest.mark.registry
def test_a_tampered_signature_is_refused(signed_push, engine):
    from helpers import raybake

    root, env, reference, digest_ref, public = signed_push
    digest = digest_ref.split("@")[1]
    att = _registry_url(engine, digest_ref, "manifests", digest.replace(":", "-") + ".att")
    original = _get(att)
    manifest = json.loads(original)
    envelope = json.loads(_get(_registry_url(engine, digest_ref, "blobs", manifest["layers"][0]["digest"])))
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[-1] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    from raybake.tools import registry

    try:
        # Added as cosign adds one: appended, the valid one kept (and still counting).
        registry.add_attestation(digest_ref, json.dumps(envelope).encode(), PREDICATE_TYPE)
        kept = [layer["digest"] for layer in json.loads(_get(att))["layers"]]
        assert len(kept) == 2 and kept[0] == manifest["layers"][0]["digest"]
        assert raybake("verify", "--attestation", reference, "-C", str(root), env=env).returncode == 0
        # Only the tampered envelope under the .att tag.
        _put_manifest(att, json.dumps({**manifest, "layers": []}).encode())
        registry.add_attestation(digest_ref, json.dumps(envelope).encode(), PREDICATE_TYPE)
        proc = raybake("verify", "--attestation", reference, "-C", str(root), env=env, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "attestation 1: no signature in it verifies with the key" in proc.stdout
        proc = raybake("build", "--push", "-C", str(root), env=env, check=False)
        assert proc.returncode == 2 and "no verification statement signed by that key" in proc.stderr
        assert "raybake build --push --force" in proc.stderr
    finally:
        _put_manifest(att, original)
    assert raybake("verify", "--attestation", reference, "-C", str(root), env=env).returncode == 0


@pytest.mark.engine
@pytest.mark.registry
def test_a_forged_label_without_a_signature_is_refused_when_a_key_is_configured(pushed_example, tmp_path):
    """The session's stand-in carries the plan's label and an (unsigned) verification
    record, as anyone who may push can make: without a key it counts, with one not."""
    import shutil

    from helpers import raybake

    root = tmp_path / "ray-app"
    shutil.copytree(pushed_example.root, root)
    (tmp_path / "raybake.pub").write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    keyed = {**pushed_example.env, "RAYBAKE_VERIFICATION_KEY": str(tmp_path / "raybake.pub")}
    args = ("job-config", "-C", str(root), "--format", "kuberay", "--entrypoint", "python -m ray_app",
            "--working-dir-uri", "https://example.com/ray-app/wd-0123.zip")
    assert pushed_example.by_digest in raybake(*args, env=pushed_example.env).stdout
    proc = raybake(*args, env=keyed, check=False)
    assert proc.returncode == 2 and pushed_example.by_digest not in proc.stdout
    assert "no verification statement signed by that key" in proc.stderr
    assert ".att" in proc.stderr and "RAYBAKE_SIGNING_KEY" in proc.stderr
    (root / "images" / "py313.yaml").unlink()  # only the default spec's image is pushed
    raybake("pin", "-C", str(root), env=pushed_example.env, check=False)  # writes the pin (exit 1: rewritten)
    assert raybake("pin", "--require-present", "-C", str(root), env=pushed_example.env).returncode == 0
    proc = raybake("pin", "--require-present", "-C", str(root), env=keyed, check=False)
    assert proc.returncode == 2 and "no verification statement signed by that key" in proc.stderr
    proc = raybake("verify", "--attestation", pushed_example.reference, "-C", str(root), env=keyed, check=False)
    assert proc.returncode == 1 and "no attestation is attached" in proc.stdout
