"""The README stays true: its configuration table, command table and architecture diagram match the code."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

import typer

from services.notifier.settings import NotifierSettings
from shared.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_configuration_table_documents_every_setting_and_no_other():
    documented = set(re.findall(r"^\| `(IMI_[A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    settings = {f"IMI_{name.upper()}" for name in Settings.model_fields}
    settings |= {f"IMI_NOTIFIER_{name.upper()}" for name in NotifierSettings.model_fields}
    assert documented == settings


def test_the_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "./scripts/test" in README
    assert ci.rstrip().endswith("./scripts/test")
    # ... in a fresh virtual environment, which ./scripts/test (scripts/_venv.sh) would otherwise reuse.
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-2:] == ['"${PYTHON:-python3}" -m venv --clear .venv', "./scripts/test"]


def _diagram_edges() -> set[tuple[str, str]]:
    """(event type pattern, consuming service) of each ``bus -->|pattern| a & b`` line of the diagram."""
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", README, flags=re.DOTALL)
    edges = set()
    for pattern, targets in re.findall(r"^\s*bus -->\|([^|]+)\| (.+)$", diagram, flags=re.MULTILINE):
        edges |= {(pattern.strip(), target.strip()) for target in targets.split("&")}
    return edges


def test_the_architecture_diagram_shows_every_event_flow_and_no_other():
    from services import load_definition
    from shared.settings import SERVICES

    edges = _diagram_edges()
    bound = {
        (event_type, service) for service in SERVICES for event_type in load_definition(service).handlers.event_types
    }
    missing = sorted(
        (event_type, service)
        for event_type, service in bound
        if not any(target == service and fnmatchcase(event_type, pattern) for pattern, target in edges)
    )
    assert not missing, f"events consumed but not in the README's diagram: {missing}"
    unused = sorted(
        (pattern, target)
        for pattern, target in edges
        if not any(service == target and fnmatchcase(event_type, pattern) for event_type, service in bound)
    )
    assert not unused, f"arrows in the README's diagram that no binding backs: {unused}"


def _imi_commands(group: typer.Typer, prefix: str = "") -> set[str]:
    names = set()
    for command in group.registered_commands:
        assert command.callback is not None
        names.add(prefix + (command.name or command.callback.__name__.replace("_", "-")))
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        names |= _imi_commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return names


def test_the_command_table_lists_every_imi_command_and_no_other():
    from services.cli import app

    documented = set(re.findall(r"^\| `imi ([a-z-]+(?: [a-z-]+)?)", README, flags=re.MULTILINE))
    assert documented == _imi_commands(app)
