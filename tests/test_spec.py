import re
from pathlib import Path

import pytest
from helpers import billion_laughs

from raybake.errors import SpecError
from raybake.project import load_project
from raybake.spec import load_specs, select


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_plain_project_has_one_default_spec(copy_fixture):
    (spec,) = load_specs(load_project(copy_fixture("small")), {})
    assert spec.name == "default"
    assert spec.repository == "small"
    assert spec.python is None  # nothing pinned: the base image's own Python decides
    assert spec.base_image == "python:3.11-slim-bookworm"
    assert spec.network == "default"
    assert spec.groups == () and not spec.dev


def test_images_dir_gives_one_spec_per_file_over_tool_raybake_defaults(copy_fixture):
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\nrepository = "acme/small"\napt_packages = ["git"]\n')
    write(root, "images/cpu.yaml", "extras: [table]\n")
    write(root, "images/gpu.yaml", "base_image: nvidia/cuda:12\napt_packages: [curl, git, curl]\n")
    cpu, gpu = load_specs(load_project(root), {})
    assert (cpu.name, cpu.repository, cpu.extras, cpu.apt_packages) == ("cpu", "acme/small", ("table",), ("git",))
    assert (gpu.base_image, gpu.apt_packages) == ("nvidia/cuda:12", ("curl", "git"))
    assert select((cpu, gpu), ["gpu"]) == (gpu,)
    with pytest.raises(SpecError, match="several image specs") as err:
        select((cpu, gpu), [])
    assert "`raybake audit cpu`" in err.value.fix  # a name of its own, for any command
    with pytest.raises(SpecError, match="no image spec named tpu"):
        select((cpu, gpu), ["tpu"])


def test_environment_overrides_every_spec(copy_fixture):
    root = copy_fixture("small")
    write(root, "images/a.yaml", "repository: x/a\nnetwork: none\n")
    write(root, "images/b.yaml", "base_image: b:1\n")
    env = {"RAYBAKE_REPOSITORY": "127.0.0.1:5000/over", "RAYBAKE_BASE_IMAGE": "base:2",
           "RAYBAKE_NETWORK": "host"}
    for spec in load_specs(load_project(root), env):
        assert (spec.repository, spec.base_image, spec.network) == ("127.0.0.1:5000/over", "base:2", "host")


def test_an_environment_override_for_one_spec_comes_before_the_one_for_every_spec(copy_fixture):
    """A matrix of Pythons needs a base per spec: RAYBAKE_BASE_IMAGE_PY3_13 for images/py3.13.yaml."""
    root = copy_fixture("small")
    write(root, "images/py3.11.yaml", 'python: "3.11"\n')
    write(root, "images/py3.13.yaml", 'python: "3.13"\n')
    env = {"RAYBAKE_BASE_IMAGE": "bookworm:1", "RAYBAKE_BASE_IMAGE_PY3_13": "trixie:1",
           "RAYBAKE_REPOSITORY_PY3_11": "reg.example/old"}
    specs = {s.name: s for s in load_specs(load_project(root), env)}
    assert (specs["py3.11"].base_image, specs["py3.11"].repository) == ("bookworm:1", "reg.example/old")
    assert (specs["py3.13"].base_image, specs["py3.13"].repository) == ("trixie:1", "small")


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("python: \"3.11\"\nbase_imag: x\n", r"images/bad.yaml:2: unknown field 'base_imag'"),
        ("apt_packages:\n  - git\n  - 3\n", r"images/bad.yaml:3: field 'apt_packages.1' must be a string"),
        ("python: 3.10\n", r"images/bad.yaml:1: field 'python' must be a string, got 3.1"),
        ("dev: maybe\n", r"images/bad.yaml:1: field 'dev' must be true or false"),
        ("env:\n  A: 1\n", r"images/bad.yaml:2: field 'env.A' must be a string"),
        ("groups: [a\nextras: []\n", r"images/bad.yaml:2:\d+: invalid YAML"),
        ("- a\n- b\n", r"images/bad.yaml: a spec must be a mapping"),
        ("network: bridge\n", r"network must be default, host or none"),
        ("repository: Not Valid\n", r"is not a valid image repository"),
        ("env:\n  1BAD: x\n", r"not a valid environment variable name"),
        ("python: \"3.11\"\nstage_max_mb: 5\n", r"images/bad.yaml:2: 'stage_max_mb' is project-wide"),
        ("compression_level: 10\n", r"compression_level 10 is out of gzip's range 0-9"),
        ("compression: zstd\ncompression_level: 23\n", r"compression_level 23 is out of zstd's range 0-22"),
        ("compression_level: fast\n", r"images/bad.yaml:1: field 'compression_level' must be"),
    ],
)
def test_spec_errors_name_file_line_and_fix(copy_fixture, yaml_text, expected):
    root = copy_fixture("small")
    write(root, "images/bad.yaml", yaml_text)
    with pytest.raises(SpecError, match=expected) as info:
        load_specs(load_project(root), {})
    assert info.value.fix


def test_an_unknown_base_preset_is_refused_naming_the_presets(copy_fixture):
    root = copy_fixture("small")
    write(root, "images/bad.yaml", "base: raay\n")
    with pytest.raises(SpecError, match=r"images/bad.yaml: base 'raay' is not one of raybake's presets") as info:
        load_specs(load_project(root), {})
    assert "set base to one of: anyscale, cuda, python-slim, ray" in info.value.fix


def test_tool_raybake_errors_name_the_table(copy_fixture):
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n[tool.raybake]\nflavour = 1\n")
    with pytest.raises(SpecError, match=r"\[tool.raybake\]: unknown field 'flavour'"):
        load_specs(load_project(root), {})


def test_python_default_prefers_python_version_file(copy_fixture):
    root = copy_fixture("small")
    (root / ".python-version").write_text("# pinned\n3.12.4\n")
    (spec,) = load_specs(load_project(root), {})
    assert spec.python == "3.12.4"
    assert spec.base_image == "python:3.12-slim-bookworm"


@pytest.mark.parametrize(("requires", "pin", "ok"), [
    (">=3.11", "3.10", False), (">=3.11", "3.11", True), ("==3.11.11", "3.11.2", False),
    ("==3.11.11", "3.11", True), (">=3.10,<3.12", "3.12", False)])
def test_a_pin_outside_requires_python_is_refused(copy_fixture, requires, pin, ok):
    root = copy_fixture("small")
    text = (root / "pyproject.toml").read_text().replace('requires-python = ">=3.11"', f'requires-python = "{requires}"')
    (root / "pyproject.toml").write_text(text)
    (root / "uv.lock").write_bytes((root / "uv.lock").read_bytes().replace(
        b'requires-python = ">=3.11"', f'requires-python = "{requires}"'.encode(), 1))
    (root / ".python-version").write_text(pin + "\n")
    if ok:
        load_specs(load_project(root), {})
    else:
        with pytest.raises(SpecError, match=r"\.python-version: Python .* does not satisfy requires-python") as info:
            load_specs(load_project(root), {})
        assert ".python-version" in info.value.fix


@pytest.mark.parametrize(("spec_python", "requires", "found", "expected"), [
    (None, ">=3.10", {"python3": "3.11.2", "python3.11": "3.11.2"}, "3.11.2"),  # the base's own, not 3.10
    (None, ">=3.12", {"python3": "3.11.2", "python3.11": "3.11.2", "python3.12": "3.12.1"}, "3.12.1"),
    ("3.11.11", ">=3.11", {"python3": "3.11.2", "python3.11": "3.11.2"}, "3.11.2"),  # patch pins are a dev detail
    ("3.12", ">=3.11", {"python3": "3.11.2", "python3.11": "3.11.2"}, "python3.11 (3.11.2)"),
    (None, "==3.11.11", {"python3": "3.11.2", "python3.11": "3.11.2"}, "none satisfies requires-python"),
    ("3.11", "==3.11.11", {"python3.11": "3.11.2"}, "does not satisfy requires-python ==3.11.11"),
    (None, ">=3.11", {}, "no python3 at all"),
])
def test_python_is_resolved_against_the_base_image(copy_fixture, spec_python, requires, found, expected):
    from raybake.plan import resolve_python
    from raybake.spec import ImageSpec

    spec = ImageSpec(name="default", source="pyproject.toml", repository="r", base_image="b:1", python=spec_python)
    if expected[0].isdigit():
        assert resolve_python(spec, requires, found) == expected
    else:
        with pytest.raises(SpecError) as info:
            resolve_python(spec, requires, found)
        assert expected in info.value.message and "b:1" in info.value.message
        assert "base_image" in info.value.fix


@pytest.mark.parametrize(("spec_yaml", "asked_in"), [(None, ".python-version"),
                                                   ('python: "3.12"\n', "images/default.yaml")])
def test_a_python_the_base_lacks_names_the_file_that_asks_for_it(copy_fixture, spec_yaml, asked_in):
    from raybake.plan import resolve_python

    root = copy_fixture("small")
    (root / ".python-version").write_text("3.12\n")
    if spec_yaml:
        (root / "images").mkdir()
        (root / "images/default.yaml").write_text(spec_yaml)
    (spec,) = load_specs(load_project(root), {})
    with pytest.raises(SpecError) as info:
        resolve_python(spec, ">=3.11", {"python3": "3.11.2", "python3.11": "3.11.2"})
    assert info.value.message.startswith(f"{asked_in}: Python 3.12 is asked for")
    assert f"change {asked_in}" in info.value.fix or asked_in == spec.source


# ---------------------------------------------------------------- hostile specs (issue 14)

def test_yaml_aliases_are_refused_before_they_expand(copy_fixture):
    root = copy_fixture("small")
    text = billion_laughs()
    assert len(text) < 600
    write(root, "images/bomb.yaml", text)
    with pytest.raises(SpecError) as info:
        load_specs(load_project(root), {})
    assert info.value.message.startswith(f"{root / 'images/bomb.yaml'}:2: YAML anchor &a")
    assert "write the value out" in info.value.fix
    write(root, "images/bomb.yaml", "a: &x 1\npython: *x\n")
    with pytest.raises(SpecError, match=r"bomb.yaml:1: YAML anchor &x"):
        load_specs(load_project(root), {})
    write(root, "images/bomb.yaml", 'python: "3.11"\ngroups: [*x]\n')  # an alias alone is refused too
    with pytest.raises(SpecError, match=r"bomb.yaml:2: YAML alias \*x"):
        load_specs(load_project(root), {})


@pytest.mark.parametrize("yaml_text", [
    "python: [" + ", ".join(["lol"] * 5000) + "]\n",
    "python: " + "x" * 20000 + "\n" + "python: 3\n",
    "env:\n  A: [" + ", ".join(["lol"] * 5000) + "]\n",
    "repository: " + "X" * 20000 + "\n",
    "x" * 20000 + ": 1\n",
])
def test_spec_errors_show_only_an_excerpt_of_a_bad_value(copy_fixture, yaml_text):
    root = copy_fixture("small")
    write(root, "images/big.yaml", yaml_text)
    with pytest.raises(SpecError) as info:
        load_specs(load_project(root), {})
    assert len(info.value.message) < len(str(root)) + 250, info.value.message
    if "X" * 20000 in yaml_text:
        # The long value is quoted cut to about 80 characters (raybake.spec.excerpt), not dropped.
        (quoted,) = re.findall(r"'[Xx.]{20,}'", info.value.message)
        assert 70 <= len(quoted) <= 90, info.value.message


def test_a_non_utf8_spec_is_an_error(copy_fixture):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/latin1.yaml").write_bytes("env: {A: \"caf\xe9\"}\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8") as info:
        load_specs(load_project(root), {})
    assert "UTF-8" in info.value.fix


@pytest.mark.parametrize(("value", "what"), [("a\nb", "line break"), ("a\rb", "line break"),
                                              ("a\x00b", "control character")])
def test_env_values_with_line_breaks_are_refused(copy_fixture, value, what):
    root = copy_fixture("small")
    write(root, "images/default.yaml", "env:\n  X: " + '"' + value.encode("unicode_escape").decode() + '"\n')
    with pytest.raises(SpecError, match=f"env: the value of X holds a {what}") as info:
        load_specs(load_project(root), {})
    assert "one line" in info.value.fix


def test_env_values_are_kept_exactly_as_written(copy_fixture):
    root = copy_fixture("small")
    write(root, "images/default.yaml", "env:\n  X: '${PATH}:$HOME'\n  Y: 'tab\there \"q\" \\\\ é'\n")
    (spec,) = load_specs(load_project(root), {})
    assert dict(spec.env) == {"X": "${PATH}:$HOME", "Y": 'tab\there "q" \\\\ é'}


# ---------------------------------------------------------------- ca_bundle (issue 14.2)

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
KEY = ("-----BEGIN PRIVATE KEY-----\n"
       "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
       "-----END PRIVATE KEY-----\n")


def first_certificate() -> str:
    text = SYSTEM_CA.read_text()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----\n")
    return text[text.index("-----BEGIN CERTIFICATE-----"):end]


def relabelled_key() -> str:
    """A private key's base64 under a CERTIFICATE label."""
    return KEY.replace("PRIVATE KEY", "CERTIFICATE")


@pytest.mark.parametrize(("content", "problem"), [
    ("", "holds no certificate"),
    ("root:x:0:0:root:/root:/bin/bash\n", "line 1: text outside a certificate block"),
    ("[default]\naws_secret_access_key = abc\n", "line 1: text outside a certificate block"),
    (KEY, "line 1: a private key (PRIVATE KEY)"),
    ("<cert>" + KEY, "a private key"),
    ("# proxy CA\n<cert>", "line 1: text outside a certificate block"),
    ("<cert># trailing note\n", "text outside a certificate block"),
    (relabelled_key(), "line 1: the block is not an X.509 certificate"),
    ("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", "line 2: not base64"),
    ("-----BEGIN CERTIFICATE-----\nMIIB\n", "line 1: the certificate block begun here has no"),
    ("\xff\xfe", "not ASCII"),
])
def test_ca_bundle_must_be_pem_certificates_only(copy_fixture, tmp_path, content, problem):
    root = copy_fixture("small")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(content.replace("<cert>", first_certificate()).encode("latin-1"))
    write(root, "images/default.yaml", f"ca_bundle: {bundle}\n")
    with pytest.raises(SpecError) as info:
        load_specs(load_project(root), {})
    assert f"ca_bundle {bundle} is not a bundle of PEM certificates" in info.value.message
    assert problem in info.value.message
    assert "BEGIN CERTIFICATE" in info.value.fix
    # RAYBAKE_CA_BUNDLE is held to the same rule, and named.
    (root / "images/default.yaml").unlink()
    with pytest.raises(SpecError, match=f"RAYBAKE_CA_BUNDLE {bundle} is not a bundle"):
        load_specs(load_project(root), {"RAYBAKE_CA_BUNDLE": str(bundle)})


def test_ca_bundle_that_is_a_directory_or_missing_is_an_error(copy_fixture, tmp_path):
    root = copy_fixture("small")
    with pytest.raises(SpecError, match="RAYBAKE_CA_BUNDLE .* is not a bundle of PEM certificates: "
                                        "it is not a regular file"):
        load_specs(load_project(root), {"RAYBAKE_CA_BUNDLE": str(tmp_path)})
    with pytest.raises(SpecError, match="does not exist"):
        load_specs(load_project(root), {"RAYBAKE_CA_BUNDLE": str(tmp_path / "nope.pem")})


def test_a_real_bundle_is_accepted(copy_fixture, tmp_path):
    root = copy_fixture("small")
    bundle = tmp_path / "proxy.pem"
    # Blank lines and CRLF between blocks are whitespace.
    bundle.write_bytes(b"\r\n" + SYSTEM_CA.read_bytes().replace(b"\n", b"\r\n") + b"\n\n")
    (spec,) = load_specs(load_project(root), {"RAYBAKE_CA_BUNDLE": str(bundle)})
    assert spec.ca_bundle == bundle
    (spec,) = load_specs(load_project(root), {"SSL_CERT_FILE": str(SYSTEM_CA)})
    assert spec.ca_bundle == SYSTEM_CA


def test_ssl_cert_file_that_is_not_a_bundle_is_left_out_with_a_note(copy_fixture, tmp_path, caplog):
    root = copy_fixture("small")
    with_comments = tmp_path / "cacert.pem"  # like certifi's bundle
    with_comments.write_text("# Issuer: CN=Example\n" + first_certificate())
    (spec,) = load_specs(load_project(root), {"SSL_CERT_FILE": str(with_comments)})
    assert spec.ca_bundle is None
    assert "SSL_CERT_FILE" in caplog.text and str(with_comments) in caplog.text
    assert "ca_bundle" in caplog.text
    (spec,) = load_specs(load_project(root), {"SSL_CERT_FILE": str(tmp_path / "missing.pem")})
    assert spec.ca_bundle is None


@pytest.mark.parametrize("name", ["HOST_CI_TOKEN", "AWS_SECRET_ACCESS_KEY", "UV_INDEX_CORP", "GIT_CONFIG_KEY_X",
                                  "UV_PUBLISH_PASSWORD"])
def test_index_secrets_name_only_what_uv_and_git_read_for_authentication(copy_fixture, name):
    root = copy_fixture("small")
    write(root, "images/default.yaml", f"index_secrets: [{name}]\n")
    with pytest.raises(SpecError, match=f"'{name}' is not a variable uv or git reads for authentication") as info:
        load_specs(load_project(root), {})
    assert "UV_INDEX_<NAME>_USERNAME" in info.value.fix


def test_index_secrets_take_uv_index_credentials_and_git_config_variables(copy_fixture):
    root = copy_fixture("small")
    names = ["UV_INDEX_CORP_PASSWORD", "UV_INDEX_CORP_USERNAME", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL",
             "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"]
    write(root, "images/default.yaml", f"index_secrets: [{', '.join(names)}]\nbuild_with_secrets: true\n")
    (spec,) = load_specs(load_project(root), {})
    assert spec.index_secrets == tuple(sorted(names)) and spec.build_with_secrets
