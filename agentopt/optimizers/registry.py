"""Which optimiser a method name means: agentopt's own, those registered in code, and plugins.

A method name is looked up in three places, in this order:

1. ``register_optimizer(name, target)`` calls made in this process (they may replace a built-in,
   but only when asked to with ``replace=True``);
2. the built-ins below;
3. entry points of the group ``agentopt.optimizers`` that installed distributions declare
   (``[project.entry-points."agentopt.optimizers"]`` in a plugin's pyproject.toml: the entry
   point's name is the method name, its value ``module:Class``).

Entry points are read only when a name is not found in the first two places or when the whole
list is wanted, and a plugin's module is imported only when its name is asked for, so a broken
plugin costs nothing until someone uses it, and then it is one line saying which plugin it is.

A run stores only its method's name (config.json), so resuming a run looks the name up again:
a method registered in code must be registered again, in the resuming process, first.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentopt.errors import UserError, one_line
from agentopt.files import read_text

if TYPE_CHECKING:
    from agentopt.optimizers.base import OptimizationResult, RunContext

ENTRY_POINT_GROUP = "agentopt.optimizers"

# name -> "module:Class"; imported on demand, since some optimisers pull in torch.
_METHODS = {
    "human": "agentopt.optimizers.human:Human",
    "promst": "agentopt.optimizers.promst:Promst",
    "ape": "agentopt.optimizers.ape:Ape",
    "apo": "agentopt.optimizers.apo:Apo",
    "opro": "agentopt.optimizers.opro:Opro",
    "apohf": "agentopt.optimizers.apohf:Apohf",
    "demos": "agentopt.optimizers.demos:Demos",
    "reflexion": "agentopt.verbal.reflexion:Reflexion",
}
METHOD_NAMES = tuple(_METHODS)  # the built-ins only; `method_names()` has every source

# Registered in code: a class, or a "module:Class" string imported when first asked for.
_REGISTERED: dict[str, type | str] = {}

# Names become run-directory names, CSV cells and --methods items: no commas, spaces or slashes.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@runtime_checkable
class Optimizer(Protocol):
    """What agentopt runs: a prompt optimiser.

    Its class is built with hyperparameters only, as keyword arguments (it raises
    `agentopt.errors.UserError` for one it does not know, so a typo in ``--set`` is an error),
    and is registered under its ``name``. ``optimize`` does the search through ``ctx`` (scoring,
    optimizer-model calls, candidates), which is what keeps budgets, the response cache and
    ``--resume`` working, and returns what ``ctx.finish(self.name, ...)`` returns.
    """

    name: str

    def optimize(self, ctx: RunContext) -> OptimizationResult: ...


class UnknownMethod(UserError):
    """No built-in, registration or plugin has this method name."""


@dataclass(frozen=True)
class MethodSource:
    """Where a method name comes from, for listings (``agentopt methods``)."""

    name: str
    origin: str  # "built-in", "code" or "plugin"
    target: str  # "module:Class"
    distribution: str | None = None  # the plugin's distribution


def register_optimizer(name: str, target: type | str, *, replace: bool = False) -> None:
    """Make ``name`` mean the optimiser class ``target`` (or ``"module:Class"``, imported when
    the name is first used) in this process.

    Registering the same target again does nothing; another target under a name already taken
    (a built-in or an earlier registration) is a UserError unless ``replace=True``. A name taken
    only by a plugin's entry point is not checked here (that would read every installed
    distribution's metadata): the registration wins over the plugin.
    """
    _check_name(name)
    if isinstance(target, str):
        _split_target(target, f"optimizer {name!r}")
    else:
        _checked_class(target, f"optimizer {name!r}")
    current = _REGISTERED.get(name, _METHODS.get(name))
    if current is not None and _same_target(current, target):
        return
    if current is not None and not replace:
        raise UserError(
            f"method {name!r} is already registered ({_describe(current)}); "
            f"pass replace=True to register {_describe(target)} in its place"
        )
    _REGISTERED[name] = target


def unregister_optimizer(name: str) -> None:
    """Undo `register_optimizer` for ``name`` (a built-in it replaced comes back); tests use it
    to clean up. A name not registered in code is left alone."""
    _REGISTERED.pop(name, None)


def method_class(name: str) -> type[Optimizer]:
    """The optimiser class a method name means (see the module docstring for the order)."""
    if name in _REGISTERED or name in _METHODS:
        target = _REGISTERED.get(name, _METHODS.get(name))
        where = f"optimizer {name!r}"
        if isinstance(target, str):
            target = _import_target(target, where)
        return _checked_class(target, where)
    found = _entry_points().get(name)
    if not found:
        raise UnknownMethod(
            f"unknown method {name!r} (choose from {', '.join(method_names())}; the command line "
            "knows the built-ins and installed plugins (entry-point group agentopt.optimizers), "
            "not an optimiser registered with agentopt.register_optimizer in another process)")
    if len({ep.value for ep in found}) > 1:
        offers = "; ".join(f"{ep.value} from {_dist(ep)}" for ep in found)
        raise UserError(f"method {name!r} is offered by more than one plugin ({offers}): uninstall one")
    entry = found[0]
    where = f"plugin entry point {name!r} = {entry.value!r} of {_dist(entry)}"
    try:
        loaded = entry.load()
    except Exception as exc:  # any error at the plugin's import is the plugin's, not agentopt's
        raise UserError(f"{where} cannot be loaded: {one_line(exc)}") from None
    return _checked_class(loaded, where)


def build_optimizer(name: str, settings: dict[str, Any]) -> Optimizer:
    """The optimiser for a run: ``method_class(name)(**settings)``, checked to be filed under the
    name it was asked by (bench groups and compares results by ``result.method``)."""
    cls = method_class(name)
    try:
        optimizer = cls(**settings)
    except TypeError as exc:
        raise UserError(_bad_options(name, cls, settings, exc)) from None
    own = getattr(optimizer, "name", name)
    if own != name:
        raise UserError(
            f"method {name!r} is {type(optimizer).__qualname__}, whose name is {own!r}: its results "
            f"would be filed under {own!r}; register it as {own!r}, or give it name = {name!r}"
        )
    return optimizer


def read_method_config(path: Path) -> dict[str, dict[str, Any]]:
    """A ``--config`` file: per-method hyperparameters ``{method: {option: value}}``, each key a
    known method. The options themselves are checked when the optimiser is built."""
    try:
        config = json.loads(read_text(path, "config file"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    values = config.values() if isinstance(config, dict) else [None]
    if not all(isinstance(v, dict) for v in values):
        raise UserError(f"{path} must map methods to objects, e.g. {{\"promst\": {{...}}}}")
    for name in config:
        method_class(name)
    return config


def method_names() -> list[str]:
    """Every method name that can be asked for: built-ins, code registrations, plugins."""
    return [source.name for source in method_sources()]


def method_sources() -> list[MethodSource]:
    """Every method name with where it comes from, built-ins first. Plugins are listed from
    their metadata, without importing them."""
    sources = [MethodSource(n, "built-in", t) for n, t in _METHODS.items() if n not in _REGISTERED]
    sources += [MethodSource(n, "code", _describe(t)) for n, t in _REGISTERED.items()]
    taken = {s.name for s in sources}
    for name, found in sorted(_entry_points().items()):
        if name not in taken:
            sources.append(MethodSource(name, "plugin", found[0].value, _dist(found[0])))
    return sources


# --- helpers ------------------------------------------------------------------------------------
def _bad_options(name: str, cls: type, settings: dict[str, Any], exc: TypeError) -> str:
    """One line for a constructor's TypeError: the options its signature does not take, or
    what it raised (a class whose ``__init__`` takes no ``**kwargs`` raises TypeError for a
    misspelt option, where agentopt's own raise a UserError)."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**settings)
        except TypeError:
            params = signature.parameters.values()
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
            known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            unknown = [key for key in settings if key not in known]
            if unknown and not takes_any:
                return (f"method {name!r} has no option {', '.join(map(repr, unknown))} "
                        f"(its options: {', '.join(known) or 'none'})")
            missing = [p.name for p in params if p.default is p.empty
                       and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in settings]
            if missing:
                return f"method {name!r} needs the option {', '.join(map(repr, missing))}"
    given = ", ".join(f"{key}={value!r}" for key, value in settings.items()) or "no options"
    return f"method {name!r} cannot be built with {given}: {one_line(exc)}"


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"method name {name!r} is not allowed: use lower-case letters, digits, '_' and '-' "
            "(starting with a letter or digit)"
        )


def _entry_points() -> dict[str, list[importlib.metadata.EntryPoint]]:
    """The group's entry points by name, read afresh each time (sys.path may have changed).
    Names a method could never be asked by are left out."""
    found: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _NAME.fullmatch(entry.name):
            found.setdefault(entry.name, []).append(entry)
    return found


def _dist(entry: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"distribution {dist.name} {dist.version}" if dist is not None else "an unnamed distribution"


def _split_target(target: str, where: str) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise UserError(f"{where}: {target!r} is not of the form 'module:Class'")
    return module, attr


def _import_target(target: str, where: str) -> Any:
    module, attr = _split_target(target, where)
    try:
        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except Exception as exc:
        raise UserError(f"{where} = {target!r} cannot be loaded: {one_line(exc)}") from None
    return found


def _checked_class(target: Any, where: str) -> type[Optimizer]:
    if not isinstance(target, type) or not callable(getattr(target, "optimize", None)):
        raise UserError(
            f"{where} is {target!r}, not an optimiser class (a class with an optimize(ctx) method)"
        )
    return target


def _describe(target: type | str) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _same_target(a: type | str, b: type | str) -> bool:
    # Two classes are the same only if they are one object: a class defined again (a reloaded
    # module, a test's local class) under the same qualified name is another optimiser.
    if isinstance(a, type) and isinstance(b, type):
        return a is b
    return _describe(a) == _describe(b)


