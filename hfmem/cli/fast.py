"""The values of a plain command line, without typer's per-parameter validation machinery.

typer (0.29) coerces every parameter that is not a bool flag through a pydantic ``TypeAdapter`` built for it
when the command runs (``typer._coercion.build_runtime_param``): the first one imports pydantic (≈40 ms) and
each one builds a validator (≈1.5 ms), so ``hfmem MODEL --format json`` spent ≈70 ms of a ≈220 ms warm run
there. typer offers no public switch for it (a ``parser=`` builds a TypeAdapter too).

``plain_call`` therefore reads the command line itself when, and only when, its meaning is beyond doubt:

* every token after the command name is a model (it does not start with ``-``), or exactly one of the
  command's option names (``--format``, ``-f``; no ``--opt=value``, no bundled short options, no ``--``),
  each option at most once, an option's value the next token and not starting with ``-``;
* every parameter is one typer turns into the same Python value without pydantic's help: ``str``, a bool
  flag or ``--x/--no-x`` pair, an ``Enum`` given by its exact value, an ``int`` or ``float`` written as plain decimal digits, the
  models as a list of strings; with no envvar, callback, prompt, counter or custom parser.

The names, flags and defaults come from the click command typer builds from the same declarations
(``typer.main.get_command``), so there is one definition of every option. Anything else — ``--help``, a typo,
``-fjson``, ``--format JSON``, ``--batch 1e3``, a missing value, no model — returns ``None``, and typer parses
and reports it exactly as before. ``tests/test_warm_imports.py`` checks, option by option, that the values
here equal the ones typer's own parsing gives the command.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_NOT_PLAIN = object()


def _plain_type(hint):
    """The one non-None type of ``hint`` (``Optional[X]`` → X), or None when it is a union of several."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner[0] if len(inner) == 1 else None
    return hint


def _convert(kind, token: str):
    """``token`` as typer would coerce it to ``kind``, or ``_NOT_PLAIN`` where typer must decide."""
    if kind is str:
        return token
    if kind is int and _INT.fullmatch(token):
        return int(token)
    if kind is float and _FLOAT.fullmatch(token):
        return float(token)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        for member in kind:  # typer's choices are case-sensitive here: the exact value or typer decides
            if member.value == token:
                return member
    return _NOT_PLAIN


def _default_is_plain(kind, default) -> bool:
    """A default typer passes through unchanged (a float option with an int default would become a float)."""
    if default is None:
        return True
    if kind is bool or kind is str:
        return type(default) is kind
    if kind is int:
        return type(default) is int
    if kind is float:
        return type(default) is float
    return isinstance(kind, type) and issubclass(kind, enum.Enum) and isinstance(default, kind)


def _spec(command, function):
    """(the models parameter's name or None, {option name: (parameter, kind)}) of a click ``command``, or None
    when a parameter is not plain."""
    function = inspect.unwrap(function)
    hints = typing.get_type_hints(function)
    if set(inspect.signature(function).parameters) != {param.name for param in command.params}:
        return None  # a typer.Context or another parameter typer fills in itself
    if command.context_settings or not command.allow_interspersed_args or command.ignore_unknown_options:
        return None
    models, names = None, {}
    for param in command.params:
        kind = _plain_type(hints.get(param.name))
        if (param.envvar is not None or param.callback is not None or not param.expose_value or param.is_eager
                or param.multiple or getattr(param, "prompt", None)
                or getattr(param, "count", False)):
            return None
        if param.param_type_name == "argument":
            hint = hints.get(param.name)
            if models is not None or param.nargs != -1 or typing.get_origin(hint) is not list \
                    or typing.get_args(hint) != (str,):
                return None
            models = param.name
            continue
        if param.param_type_name != "option" or param.nargs != 1:
            return None
        if param.is_flag != (kind is bool) or not _default_is_plain(kind, param.default):
            return None
        if kind not in (bool, str, int, float) and not (isinstance(kind, type) and issubclass(kind, enum.Enum)):
            return None
        if param.secondary_opts and kind is not bool:
            return None
        for name in param.opts:
            names[name] = (param, kind, True)
        for name in param.secondary_opts:  # the off half of a ``--x/--no-x`` pair
            names[name] = (param, kind, False)
    return models, names


def plain_call(app, args: list[str]):
    """``(callback, kwargs)`` for ``args`` (``[command, ...]``, as ``hfmem.cli.route_argv`` gives them) when
    they are a plain command line for a command of ``app`` (see the module docstring), else None."""
    import typer.main

    if not args:
        return None
    info = next((c for c in app.registered_commands if c.name == args[0]), None)
    if info is None or info.callback is None:
        return None
    group = typer.main.get_command(app)  # the click command typer builds from the same declarations
    command = group.commands.get(args[0]) if hasattr(group, "commands") else None
    if command is None or group.context_settings:
        return None
    spec = _spec(command, info.callback)
    if spec is None:
        return None
    models_name, names = spec
    values: dict[str, object] = {}
    models: list[str] = []
    tokens = iter(args[1:])
    for token in tokens:
        if not token.startswith("-"):
            if models_name is None:
                return None  # typer says it takes no argument
            models.append(token)
            continue
        found = names.get(token)
        if found is None:
            return None
        param, kind, flag_value = found
        if param.name in values:
            return None
        if kind is bool:
            values[param.name] = flag_value
            continue
        value = next(tokens, None)
        if value is None or value.startswith("-"):
            return None
        converted = _convert(kind, value)
        if converted is _NOT_PLAIN:
            return None
        values[param.name] = converted
    if models_name is not None and not models:
        return None  # typer says which argument is missing
    kwargs = {param.name: param.default for param in command.params if param.param_type_name == "option"}
    kwargs.update(values)
    if models_name is not None:
        kwargs[models_name] = models
    return info.callback, kwargs
