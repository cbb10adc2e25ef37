"""The container deployment in deploy/ holds together.

No container engine runs the tests, so these read the files: the compose file, the image recipe, the
PostgreSQL init script and the RabbitMQ definitions.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SERVICES = ("registry", "exchange", "notifier", "retention")
PORTS = {"registry": 8001, "exchange": 8002, "notifier": 8003, "retention": 8004}

# A required compose variable: ${NAME:?message}. Compose refuses to start when it is unset or empty.
REQUIRED_VARIABLE = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}")
# ${USER:-imi} or a literal user, then the password, on the compose network's rabbitmq host.
BROKER_URL = re.compile(r"^amqp://(?:\$\{[^}]*\}|[^:@/]+):(?P<password>\$\{[^}]*\}|[^@]*)@rabbitmq:5672/$")
DATABASE_URL = re.compile(
    r"^postgresql\+asyncpg://(?P<user>[a-z_]+):(?P<password>\$\{[^}]*\})@postgres:5432/(?P<database>[a-z_]+)$"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def init_script() -> str:
    return (DEPLOY / "postgres" / "init-databases.sh").read_text()


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    return document


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    return services[name]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()}


def _healthcheck(service: dict[str, Any]) -> str:
    """The health check command as one string; empty when there is none or it is disabled."""
    healthcheck = service.get("healthcheck") or {}
    if healthcheck.get("disable"):
        return ""
    test = healthcheck.get("test") or []
    if isinstance(test, str):
        return test
    if test and test[0] == "NONE":
        return ""
    return " ".join(str(part) for part in test if part not in ("CMD", "CMD-SHELL"))


def _published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _mount_targets(service: dict[str, Any], source: str) -> list[PurePosixPath]:
    """Where the service mounts a file of deploy/ (compose short syntax, relative to deploy/)."""
    targets = []
    for volume in service.get("volumes") or []:
        host, container, *_ = str(volume).split(":")
        if host == source:
            targets.append(PurePosixPath(container))
    return targets


def _load_definitions_path() -> PurePosixPath:
    config = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    match = re.search(r"^load_definitions\s*=\s*(\S+)\s*$", config, re.MULTILINE)
    assert match, "rabbitmq.conf does not load definitions"
    return PurePosixPath(match.group(1))


def _dockerfile_final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _database_url(compose: dict[str, Any], service: str, name: str) -> re.Match[str]:
    url = _environment(_service(compose, service)).get(f"IMI_{name.upper()}_DATABASE_URL", "")
    match = DATABASE_URL.match(url)
    assert match, f"{service}: IMI_{name.upper()}_DATABASE_URL is not a PostgreSQL URL on postgres: {url!r}"
    return match


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_healthy_only_when_ready_on_its_own_port(compose: dict[str, Any], name: str) -> None:
    service = _service(compose, name)
    port = int(_environment(service)["IMI_HTTP_PORT"])
    assert port == PORTS[name]
    check = _healthcheck(service)
    assert f"http://127.0.0.1:{port}/health/ready" in check
    assert "urllib.request" in check, "the slim image has no curl; the check must use python's urllib"
    assert port in _published_container_ports(service)


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_own_server_from_the_project_image(compose: dict[str, Any], name: str) -> None:
    service = _service(compose, name)
    assert _command(service) == ["serve", name]
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_in_production_against_postgres_and_rabbitmq(compose: dict[str, Any], name: str) -> None:
    environment = _environment(_service(compose, name))
    assert environment["IMI_ENVIRONMENT"] == "production"
    assert environment["IMI_HTTP_HOST"] == "0.0.0.0"
    assert environment["IMI_BROKER_URL"].startswith("amqp://")
    assert "@rabbitmq:5672/" in environment["IMI_BROKER_URL"]
    assert _database_url(compose, name, name).group("database") == name


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_given_no_other_services_database(compose: dict[str, Any], name: str) -> None:
    environment = _environment(_service(compose, name))
    others = [f"IMI_{other.upper()}_DATABASE_URL" for other in SERVICES if other != name]
    assert not [variable for variable in others if variable in environment]


@pytest.mark.parametrize("name", SERVICES)
def test_service_starts_after_healthy_postgres_and_rabbitmq_and_finished_migrations(
    compose: dict[str, Any], name: str
) -> None:
    depends_on = _depends_on(_service(compose, name))
    assert depends_on.get("postgres") == "service_healthy"
    assert depends_on.get("rabbitmq") == "service_healthy"
    assert depends_on.get("migrate") == "service_completed_successfully"


@pytest.mark.parametrize("name", SERVICES)
def test_service_database_is_created_by_the_init_script_and_owned_by_its_role(
    compose: dict[str, Any], init_script: str, name: str
) -> None:
    url = _database_url(compose, name, name)
    role, database = url.group("user"), url.group("database")
    assert re.search(rf"CREATE ROLE {role} LOGIN\b", init_script)
    assert re.search(rf"CREATE DATABASE {database} OWNER {role};", init_script)
    # Without this every role may connect to every database (PUBLIC holds CONNECT by default).
    assert re.search(rf"REVOKE ALL ON DATABASE {database} FROM PUBLIC;", init_script)


def test_init_script_runs_from_the_postgres_entrypoint_directory(compose: dict[str, Any]) -> None:
    targets = _mount_targets(_service(compose, "postgres"), "./postgres/init-databases.sh")
    assert [target.parent for target in targets] == [PurePosixPath("/docker-entrypoint-initdb.d")]


def test_migrate_runs_once_for_every_service_database(compose: dict[str, Any]) -> None:
    migrate = _service(compose, "migrate")
    assert _command(migrate) == ["migrate"]
    assert migrate.get("restart") == "no"
    assert _depends_on(migrate).get("postgres") == "service_healthy"
    assert migrate["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for name in SERVICES:
        assert _database_url(compose, "migrate", name).group(0) == _database_url(compose, name, name).group(0)


def test_postgres_and_rabbitmq_report_their_health(compose: dict[str, Any]) -> None:
    assert "pg_isready" in _healthcheck(_service(compose, "postgres"))
    assert "rabbitmq-diagnostics" in _healthcheck(_service(compose, "rabbitmq"))


def test_no_private_key_is_written_into_the_deploy_files() -> None:
    private_key = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    files = [path for path in DEPLOY.rglob("*") if path.is_file()]
    assert (DEPLOY / "compose.yaml") in files
    assert not [path.name for path in files if private_key.search(path.read_text(errors="replace"))]


def test_keys_and_passwords_come_from_required_variables(compose: dict[str, Any]) -> None:
    secrets = {
        ("registry", "IMI_SIGNING_KEY"),
        ("registry", "IMI_SEALING_PUBLIC_KEY"),
        ("registry", "IMI_SECURITY_CODE_KEY"),
        ("notifier", "IMI_SEALING_PRIVATE_KEY"),
        ("postgres", "POSTGRES_PASSWORD"),
        ("rabbitmq", "IMI_RABBITMQ_PASSWORD"),
    }
    for service, variable in secrets:
        value = _environment(_service(compose, service)).get(variable, "")
        assert REQUIRED_VARIABLE.fullmatch(value), f"{service}: {variable} is {value!r}"
    for name in SERVICES:
        assert REQUIRED_VARIABLE.fullmatch(_database_url(compose, name, name).group("password"))
        broker = BROKER_URL.match(_environment(_service(compose, name))["IMI_BROKER_URL"])
        assert broker and REQUIRED_VARIABLE.fullmatch(broker.group("password"))


# ${NAME}, ${NAME:-default} or ${NAME:?message}, as compose interpolates them.
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?::(?P<kind>[-?])(?P<rest>[^}]*))?\}")


def _interpolated(environment: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """The environment a container gets when the operator set exactly ``given`` in the shell or .env."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.group("name", "kind", "rest")
        if given.get(name):
            return given[name]
        assert kind != "?", f"compose would refuse to start: {name} is required ({rest})"
        return rest if kind == "-" else ""

    return {key: INTERPOLATION.sub(value, raw) for key, raw in environment.items()}


@pytest.mark.parametrize("name", SERVICES)
def test_service_starts_with_what_its_compose_environment_gives_it(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator sets every required variable (keys as `imi keys generate` prints them): the
    service's start-up checks (keys, production database and broker) must then pass. A key the
    service needs but compose does not hand to it stops the container at start."""
    from services import create_app
    from shared.keys import generate_keys
    from shared.settings import Settings

    given = {variable: pem.strip().replace("\n", "\\n") for variable, pem in generate_keys().items()}
    required = {m.group("name") for m in INTERPOLATION.finditer(json.dumps(compose)) if m.group("kind") == "?"}
    given |= {variable: "0123456789abcdef" for variable in required if variable not in given}
    given["IMI_PUBLIC_URL"] = "https://imi.example.org"
    # Only what compose hands to the service reaches it: keys held for other services are not given.
    environment = _interpolated(_environment(_service(compose, name)), given)
    for variable in [variable for variable in os.environ if variable.startswith("IMI_")]:
        monkeypatch.delenv(variable)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)

    settings = Settings()
    assert settings.environment == "production"
    app = create_app(name, settings)  # runs the service's configuration checks
    assert app.state.runtime.settings.database_url(name).startswith("postgresql+asyncpg://")


def test_image_starts_imi_as_an_unprivileged_user() -> None:
    stage = _dockerfile_final_stage()
    entrypoints = [arguments for keyword, arguments in stage if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["imi"]
    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users, "the image runs as root unless its last stage sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_image_health_check_probes_liveness_with_urllib() -> None:
    checks = [arguments for keyword, arguments in _dockerfile_final_stage() if keyword == "HEALTHCHECK"]
    assert checks
    assert "/health/live" in checks[-1]
    assert "urllib.request" in checks[-1]
    assert "IMI_HTTP_PORT" in checks[-1]


def test_definitions_declare_the_durable_imi_events_topic_exchange(definitions: dict[str, Any]) -> None:
    exchanges = {(exchange["vhost"], exchange["name"]): exchange for exchange in definitions["exchanges"]}
    events = exchanges[("/", "imi.events")]
    assert events["type"] == "topic"
    assert events["durable"] is True
    assert events["auto_delete"] is False
    assert {"name": "/"} in definitions["vhosts"]


def test_delivery_limit_policy_covers_the_main_queues_only(definitions: dict[str, Any]) -> None:
    policies = {policy["name"]: policy for policy in definitions["policies"]}
    policy = policies["imi-queues"]
    pattern = re.compile(policy["pattern"])
    assert policy["vhost"] == "/"
    assert policy["apply-to"] in ("queues", "quorum_queues")
    assert policy["definition"]["delivery-limit"] == 50
    for name in SERVICES:
        assert pattern.search(f"imi.{name}")
        assert not pattern.search(f"imi.{name}.retry.5000")
        assert not pattern.search(f"imi.{name}.dlq")


def test_dead_letter_queues_never_expire_nor_drop_messages(definitions: dict[str, Any]) -> None:
    policy = {policy["name"]: policy for policy in definitions["policies"]}["imi-dlq"]
    for name in SERVICES:
        assert re.search(policy["pattern"], f"imi.{name}.dlq")
    forbidden = {"message-ttl", "expires", "max-length", "max-length-bytes", "delivery-limit"}
    assert not forbidden & set(policy["definition"])
    assert policy["definition"].get("overflow", "reject-publish") != "drop-head"


def test_rabbitmq_imports_the_mounted_definitions_at_boot(compose: dict[str, Any]) -> None:
    rabbitmq = _service(compose, "rabbitmq")
    load_definitions = _load_definitions_path()
    (definitions,) = _mount_targets(rabbitmq, "./rabbitmq/definitions.json")
    assert load_definitions in (definitions, definitions.parent)
    (config,) = _mount_targets(rabbitmq, "./rabbitmq/rabbitmq.conf")
    assert config.parent == PurePosixPath("/etc/rabbitmq/conf.d") or config == PurePosixPath(
        "/etc/rabbitmq/rabbitmq.conf"
    )


def test_rabbitmq_user_is_written_into_the_definitions_directory_before_the_broker_starts(
    compose: dict[str, Any],
) -> None:
    # Definitions loaded at boot make RabbitMQ skip RABBITMQ_DEFAULT_USER: the user must be in them.
    rabbitmq = _service(compose, "rabbitmq")
    (script,) = _mount_targets(rabbitmq, "./rabbitmq/seed-user.sh")
    assert str(script) in (rabbitmq.get("entrypoint") or [])
    # Overriding the entry point drops the image's command; the script hands this on to the image.
    assert _command(rabbitmq) == ["rabbitmq-server"]
    text = (DEPLOY / "rabbitmq" / "seed-user.sh").read_text()
    assert f"definitions_dir={_load_definitions_path()}\n" in text
    assert 'exec docker-entrypoint.sh "$@"' in text
