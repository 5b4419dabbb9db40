"""One look for every ``llem`` help page.

Typer prints a parameter's Python type as its placeholder (``<bool>`` beside a flag,
``<list[Path]>`` beside ``--root``) and wraps a required argument in braces in the usage line
(``{study_dir}`` beside ``[file]``). ``LlemCommand`` and ``LlemGroup`` give every command the
conventions of a CLI instead: a flag has no placeholder, an option's placeholder is an upper-case
word (``DIR``, ``N``, ``FILE``: its declared ``metavar``, else one derived from its type), an
argument is named in upper case, and the usage line reads ``llem status [OPTIONS] STUDY_DIR``.
``tests/test_cli_help.py`` walks every command's help and checks these rules.
"""

from __future__ import annotations

import types
from typing import Any

from typer import _click as click
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: placeholder of an option whose ``metavar`` was not declared, by its Python type
TYPE_METAVARS: dict[Any, str] = {int: "N", float: "X", str: "TEXT"}


def _no_type(self: Any, ctx: click.Context) -> str | None:
    return None


def tidy_params(params: list[click.Parameter]) -> None:
    """Placeholders in upper case, none beside a flag or an argument (its name says it)."""
    for p in params:
        if isinstance(p, TyperOption):
            if p.is_flag or p.count:
                p.metavar = ""
            elif p.metavar is None:
                desc = p.type_descriptor
                p.metavar = "PATH" if desc.is_path else TYPE_METAVARS.get(desc.annotation, "VALUE")
        elif isinstance(p, TyperArgument):
            p.metavar = (p.metavar or p.name or "ARG").upper()
            p.display_type_rich = types.MethodType(_no_type, p)  # type: ignore[method-assign]


def usage_pieces(command: click.Command, ctx: click.Context) -> list[str]:
    """The usage line's words: a required argument bare (``STUDY_DIR``, not ``{study_dir}``),
    an optional one in brackets, a hidden one left out."""
    rv = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument) and param.hidden:
            continue
        rv.extend(param.get_usage_pieces(ctx))
    return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in rv]


class LlemCommand(TyperCommand):
    """A typer command with the help conventions above."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        tidy_params(params)
        return params

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return usage_pieces(self, ctx)


class LlemGroup(TyperGroup):
    """A typer group with the help conventions above."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        tidy_params(params)
        return params

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*usage_pieces(self, ctx), self.subcommand_metavar]
