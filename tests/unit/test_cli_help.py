"""Every `genq ... --help` reads like a well-kept CLI's: flags bare, plain metavars,
no Python type names or braces, env vars noted one way, short first lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from genq.cli import app

# what typer prints by default and a well-kept CLI does not
UNWANTED = re.compile(
    r"<bool>|<list|[{}]|\[GENQ_"  # bare flags, metavars, arguments, one env var style
    r"|<(str|int|float|path|dir|file|dict|tuple|datetime)\b"  # Python types
    r"|\b(list|dict|tuple)\[|\b(int|float) range\b|\[x?[<>]=?"  # and typed ranges
)
EXAMPLES = {("run",), ("jobs",), ("keys",), ("serve",)}


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


ROOT: Any = typer.main.get_command(app)
ALL = list(commands(ROOT))


def test_every_command_is_walked():
    assert {("run",), ("doctor",), ("jobs", "watch"), ("keys", "create")} <= set(ALL)
    assert len(ALL) > 20


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "genq")
def test_help_reads_like_a_well_kept_cli(path: tuple[str, ...]):
    text = help_of(path)
    found = sorted({m.group(0) for m in UNWANTED.finditer(text)})
    assert not found, f"genq {' '.join(path)} --help shows {found}:\n{text}"
    rows = list(re.finditer(r"^│\s+(--(?:json|force))(\s+)(\S+)", text, re.MULTILINE))
    for row in rows:
        # a flag's row: the flag, then its help, no metavar between
        assert len(row.group(2)) >= 2 and row.group(3).islower(), row.group(0)
    if path == ("run",):
        assert [r.group(1) for r in rows] == ["--force", "--json"]
    if path in EXAMPLES:
        assert "Examples:" in text and "$ genq " in text


def test_first_lines_are_short():
    for path in ALL:
        command = ROOT
        for name in path:
            command = command.commands[name]
        # the first paragraph: what a group's command list shows
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert first, f"genq {' '.join(path)} has no help"
        assert len(first) <= 80, f"genq {' '.join(path)}: {first!r}"


def test_an_env_var_in_the_help_is_read_by_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import genq.cli

    seen: list[Path | None] = []

    def settings_for(data_dir: Path | None = None, **_: object) -> Any:
        seen.append(data_dir)
        raise typer.Exit(0)

    monkeypatch.setattr(genq.cli, "settings_for", settings_for)
    assert "[env var: GENQ_DATA_DIR]" in help_of(("db", "upgrade"))
    result = CliRunner().invoke(app, ["db", "upgrade"], env={"GENQ_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert seen == [tmp_path]
