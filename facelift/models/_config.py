"""A network's config, stated once: a table of constructor arguments.

A network class lists its constructor arguments in ``config_args``, one :class:`Arg` each
(name, default, check, when it is saved). From that one table :class:`FaceLiftModel`
gives the class its ``__init__`` signature (what ``help``, ``inspect`` and the Hub mixin
see), and ``self._register_config(*args, **kwargs)`` binds a call to it, checks and
normalises each value, keeps the config that ``config.json`` holds and sets each value
as an attribute. Checks that relate two arguments stay in the network's ``__init__``.
A subclass changes defaults with :func:`derive_args` instead of re-declaring the table::

    class UNet(FaceLiftModel):
        config_args = (Arg("resolution", 256, choice(RESOLUTIONS)), Arg("ngf", 16, check_positive_int), ...)

    class DRN(UNet):
        config_args = derive_args(UNet.config_args, out_channels=1, output_activation="tanh")
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any, Callable

from facelift._validate import is_int

Check = Callable[[str, Any], Any]  # (name, value) -> normalised value, or a ValueError naming `name`


@dataclass(frozen=True)
class Arg:
    """One constructor argument of a network.

    ``check(name, value)`` validates a value and returns it normalised (None: taken as is).
    ``saved``: ``"always"`` (written to config.json); ``"changed"`` (written only when its
    normalised value differs from the normalised default: arguments added after networks
    were shipped, so the config files of those networks stay as they were); or the name of
    another argument, to be written together with it. ``fixed``: not a constructor argument
    of this class (a subclass fixed it at its default, see :func:`derive_args`); never saved."""

    name: str
    default: Any = None
    check: Check | None = None
    saved: str = "always"
    fixed: bool = False


def derive_args(args: tuple[Arg, ...], *, fixed: tuple[str, ...] = (), add: tuple[Arg, ...] = (),
                **defaults: Any) -> tuple[Arg, ...]:
    """``args`` with the ``defaults`` named changed, the arguments in ``fixed`` fixed at their
    default (they leave the signature; the attribute keeps the default) and ``add`` appended.
    The order of the others, hence the positional order, is kept."""
    unknown = (set(defaults) | set(fixed)) - {a.name for a in args}
    if unknown:
        raise TypeError(f"derive_args: no argument(s) {sorted(unknown)} to change or fix")
    return tuple(replace(a, default=defaults.get(a.name, a.default), fixed=a.fixed or a.name in fixed)
                 for a in args) + tuple(add)


def signature(args: tuple[Arg, ...]) -> inspect.Signature:
    """The ``__init__(self, ...)`` signature the table describes (all positional-or-keyword)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("self", kind)]
                             + [inspect.Parameter(a.name, kind, default=a.default) for a in args if not a.fixed])


def bind(cls: type, args: tuple[Arg, ...], call_args: tuple, call_kwargs: dict) -> tuple[dict, dict]:
    """A call's arguments bound to the table as Python would bind them (TypeError otherwise),
    checked and normalised: (every value by name, the config to save)."""
    try:
        bound = signature(args).bind(None, *call_args, **call_kwargs)
    except TypeError as e:
        raise TypeError(f"{cls.__name__}(): {e}") from None
    bound.apply_defaults()
    values: dict[str, Any] = {}
    for a in args:
        value = a.default if a.fixed else bound.arguments[a.name]
        values[a.name] = a.check(a.name, value) if a.check is not None else value
    saved: dict[str, Any] = {}
    for a in args:
        if a.fixed:
            continue
        if a.saved == "changed":
            default = a.check(a.name, a.default) if a.check is not None else a.default
            if values[a.name] == default:
                continue
        elif a.saved != "always" and a.saved not in saved:
            continue
        saved[a.name] = _jsonable(values[a.name])
    return values, saved


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------- value checks
def choice(choices: tuple) -> Check:
    """A check that the value is one of ``choices`` (same type and value)."""
    return lambda name, value: check_choice(name, value, choices)


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    if not is_int(value, numpy=False) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def optional(check: Check) -> Check:
    """``check`` for a value that may also be None."""
    return lambda name, value: None if value is None else check(name, value)
