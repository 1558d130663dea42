"""The container image definition, the compose file and the Kubernetes manifests of a distributed run (deploy/,
docs/distributed.md "Containers"), checked with the tools that can without a container engine or a cluster:
the compose file against the compose spec that check-jsonschema vendors, the Pod and the volume claim against the
Kubernetes schemas kubernetes-validate ships, and every surge command line in them against surge's own parser —
a misspelt option would otherwise only show on the day of the rehearsal. The LocustTest custom resource has no
schema in any package: its shape and its commands are checked here, and docs/distributed.md says so.
"""

from __future__ import annotations

import json
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from loadtests.cli.main import build_parser
from loadtests.scenario.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.30.0"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8")))


def with_defaults(argv: list[str]) -> list[str]:
    """Compose's ${NAME:-default} as the default it falls back to."""
    return [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", arg) for arg in argv]


def test_the_compose_file_follows_the_compose_spec() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    jsonschema.validate(compose(), schema)
    with pytest.raises(jsonschema.ValidationError):  # the check can fail: a service key the spec does not know
        jsonschema.validate({"services": {"master": {"comand": ["run"]}}}, schema)


@pytest.mark.parametrize("service", ["gateway", "master", "worker"])
def test_every_compose_command_is_one_surge_accepts(service: str) -> None:
    argv = with_defaults(compose()["services"][service]["command"])
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]
    if service == "master":
        assert args.hosts == 2 and args.master_bind == "0.0.0.0" and args.allow_remote  # noqa: S104 - in its container
        assert args.out.startswith("/home/surge/work/runs/")  # the directory mounted from deploy/runs
        profile = load_profile(str(DEPLOY / "profiles" / "gateway.toml"), allow_remote=True, host=None, env={})
        assert profile.ledger is not None and "/gateway/surge-ledger.sqlite" in profile.ledger.url
    if service == "worker":
        assert args.master == "master:5557" and args.allow_remote
        assert compose()["services"]["worker"]["deploy"]["replicas"] == 2  # = the master's --hosts default


def test_one_non_root_image_with_surge_installed_from_the_repository() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line.split(maxsplit=1) for line in text.splitlines() if line and not line[0].isspace()]
    keywords = [parts[0] for parts in instructions if not parts[0].startswith("#")]
    assert keywords.count("FROM") == 1
    assert re.search(r"^RUN pip install \.( |$)", text, re.MULTILINE)
    for line in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (ROOT / line).exists(), line
    (user,) = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user not in ("root", "0")
    assert 'ENTRYPOINT ["surge"]' in text
    assert "/opt/surge" in text and (ROOT / "loadtests" / "locustfile.py").is_file()


@pytest.mark.parametrize("name", ["runs-pvc.yaml", "fetch-runs.yaml"])
def test_the_kubernetes_objects_validate_against_their_schemas(name: str) -> None:
    document = yaml.safe_load((DEPLOY / "k8s" / name).read_text(encoding="utf-8"))
    kubernetes_validate.validate(document, KUBERNETES, strict=True)
    broken = {**document, "spec": {**document["spec"], "unknownField": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_locust_operator_resource_runs_surge_and_keeps_the_run_folder_on_the_master_volume() -> None:
    test = yaml.safe_load((DEPLOY / "k8s" / "locusttest.yaml").read_text(encoding="utf-8"))
    assert (test["apiVersion"], test["kind"]) == ("locust.io/v2", "LocustTest")
    spec = test["spec"]
    master = shlex.split(spec["master"]["command"])
    worker = shlex.split(spec["worker"]["command"])
    locustfile = "/opt/surge/loadtests/locustfile.py"  # where the Dockerfile leaves the source
    assert master[master.index("--locustfile") + 1] == worker[worker.index("--locustfile") + 1] == locustfile
    out = master[master.index("--surge-out") + 1]
    (mount,) = [m for m in spec["volumeMounts"] if m["target"] == "master"]
    assert out.startswith(mount["mountPath"] + "/")
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    claim = yaml.safe_load((DEPLOY / "k8s" / "runs-pvc.yaml").read_text(encoding="utf-8"))
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    fetch = yaml.safe_load((DEPLOY / "k8s" / "fetch-runs.yaml").read_text(encoding="utf-8"))
    assert fetch["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert {"name": "SURGE_ALLOW_REMOTE", "value": "1"} in spec["env"]["variables"]
    assert isinstance(spec["worker"]["replicas"], int) and 1 <= spec["worker"]["replicas"] <= 500
