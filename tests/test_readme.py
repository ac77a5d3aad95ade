"""The README's Quick start stays true: two commands, and CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S)
    assert block, "README has no Quick start code block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_two_commands_and_ci_runs_the_test_command() -> None:
    install, test = quick_start_commands()
    assert "unetpp-gui" in install and "pip install -e ." in install
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_no_placeholders_left() -> None:
    text = (ROOT / "README.md").read_text()
    assert not re.search(r"\b[A-Z_]+_SECTION\b|DEPS_TF", text)
