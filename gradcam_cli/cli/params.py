"""Command-line options made from the option dataclasses' own declarations (``options.option``).

Each field with flags becomes one click option with the field's default and help, so the
command line and the Python API cannot drift apart. A repeatable option takes its flag several
times, each value possibly a comma-separated list; a comma-list option takes one such value.
"""

from __future__ import annotations

from dataclasses import MISSING, fields

import click

from ..options import split_list


def _default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _shown(value) -> str | None:
    if value is None or value == ():
        return None
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return None
    return str(value)


def click_option(cls: type, f, *, prefix: str, default=MISSING, help: str | None = None) -> click.Option:
    """One dataclass field as a click option named ``{prefix}__{field}``."""
    meta = f.metadata
    value = _default(f) if default is MISSING else default
    name = f"{prefix}__{f.name}"
    text = help or meta["help"]
    if meta["repeatable"]:
        return click.Option(
            [*meta["flags"], name],
            multiple=True,
            default=tuple(value),
            metavar=meta["metavar"],
            help=text,
            show_default=_shown(value) is not None,
        )
    if "/" in meta["flags"][0] or isinstance(value, bool):
        return click.Option([*meta["flags"], name], is_flag=True, default=value, help=text)
    kind = meta["type"] or (type(value) if value is not None and not isinstance(value, tuple) else str)
    return click.Option(
        [*meta["flags"], name],
        type=kind,
        default=_shown(value) if isinstance(value, tuple) else value,
        metavar=meta["metavar"],
        help=text,
        show_default=_shown(value) is not None,
    )


def declared(
    *classes: type,
    prefix: str | None = None,
    only: tuple[str, ...] | None = None,
    defaults: dict | None = None,
    helps: dict | None = None,
):
    """A decorator adding the command-line options of ``classes``' fields (``only`` those, when given)."""

    def decorate(command):
        params = []
        for cls in classes:
            for f in fields(cls):
                if "flags" not in f.metadata or (only is not None and f.name not in only):
                    continue
                params.append(
                    click_option(
                        cls,
                        f,
                        prefix=prefix or cls.__name__,
                        default=(defaults or {}).get(f.name, MISSING),
                        help=(helps or {}).get(f.name),
                    )
                )
        command.__click_params__ = getattr(command, "__click_params__", []) + params[::-1]
        return command

    return decorate


def built(cls: type, values: dict, *, prefix: str | None = None, **fixed):
    """The dataclass ``cls`` from a command's option values (its declared fields), plus ``fixed`` ones."""
    prefix = prefix or cls.__name__
    kwargs = {}
    for f in fields(cls):
        key = f"{prefix}__{f.name}"
        if key not in values:
            continue
        value = values[key]
        if f.metadata.get("repeatable") or f.metadata.get("comma_list"):
            value = split_list(value) if f.metadata.get("split", True) else tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs, **fixed)
