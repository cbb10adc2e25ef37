"""The README stays true: its configuration table names every setting, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

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
