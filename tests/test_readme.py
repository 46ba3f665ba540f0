"""The README's configuration table is generated from the settings model and must not go stale."""

from __future__ import annotations

from pathlib import Path

from connector.commands.configdoc import END, START, render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == render().strip(), "run: python -m connector.commands.configdoc --write README.md"


def test_readme_shows_the_two_commands_and_the_deploy_section() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert "## Deploy on Kubernetes" in text
    assert "```mermaid" in text
