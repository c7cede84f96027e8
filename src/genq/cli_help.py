"""How genq's commands print `--help`: flags bare (`--json`), options with a plain
metavar (`--out DIR`, `--input KEY=VALUE`; the option's name in capitals unless one
is given), arguments by name (`genq run ENGINE`), and no Python type names, numeric
ranges or braces. Build command groups with `App` instead of `typer.Typer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from typer import _click as click  # the click Typer carries (and its classes use)


class _Argument(TyperArgument):
    @property
    def display_name_raw(self) -> str:
        return (self.metavar or self.name or "value").upper()

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None  # the name says it (`ENGINE`); a type (`<str>`) adds nothing

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _Option(TyperOption):
    def display_type_rich(self, ctx: click.Context) -> str | None:
        if self.is_flag:
            return None
        return self.metavar or (self.name or "value").upper()

    def _get_number_range_help_str(self) -> str | None:
        return None  # limits belong in the help text, in words


def _plain(params: list[click.Parameter]) -> list[click.Parameter]:
    for param in params:
        # Typer makes these itself, with no way to choose their class: switch it
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif type(param) is TyperOption:
            param.__class__ = _Option
    return params


class HelpCommand(TyperCommand):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain(super().get_params(ctx))


class HelpGroup(TyperGroup):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain(super().get_params(ctx))


class App(typer.Typer):
    """A `typer.Typer` whose group and commands print help as described above."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        kwargs.setdefault("no_args_is_help", True)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", HelpCommand)
        return super().command(*args, **kwargs)
