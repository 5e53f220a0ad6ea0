"""YAML over frozen dataclasses: typed coercion, helpful errors, dotted command-line overrides.

Generic (nothing of sciflow): :func:`from_dict` checks a mapping against a frozen dataclass's
annotations (``Literal`` values, unions, nested dataclasses; lists become tuples, ``"1e-3"`` a
float) and :func:`to_dict` goes back; :func:`parse_overrides` / :func:`apply_overrides` handle
``section.key=value`` items; :func:`read_yaml` reads a mapping with YAML 1.2 floats and dates kept
as strings. Every error is a :class:`ConfigError` naming the dotted key, with the allowed keys (and
a "did you mean" hint) or the expected type.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")

__all__ = ["ConfigError", "apply_overrides", "coerce", "from_dict", "parse_overrides", "read_yaml", "to_dict"]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the dotted key."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


# dates stay strings (``test_start: 2019-03-25``): the library parses them where it needs times
_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
                                   for k, v in _Loader.yaml_implicit_resolvers.items()}


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


# --------------------------------------------------------------------------------------------
# generic: dict -> frozen dataclass with type checking
# --------------------------------------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _unknown_key(key: str, prefix: str, allowed: Sequence[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    msg = f"unknown key {_join(prefix, key)!r}"
    if hint:
        msg += f" (did you mean {_join(prefix, hint[0])!r}?)"
    return ConfigError(f"{msg}; allowed keys under {prefix or 'the top level'!r}: {sorted(allowed)}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert YAML forms (lists -> tuples,
    ``"1e-3"`` -> float, mappings -> dataclasses). Raises :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key!r} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key!r} = {value!r} is not allowed; allowed values: {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key!r} must not be null; expected {_type_name(tp)}")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key!r} = {value!r} does not match {_type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key!r} must be a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key!r} must be an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key!r} must be a float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key!r} must be a string, got {value!r}")
    if origin in (tuple, list, collections.abc.Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key!r} must be a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{key!r} must have {len(args)} entries, got {list(value)}")
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        return tuple(coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key!r} must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): coerce(v, vt, _join(key, str(k))) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{key!r} must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a (partial) mapping over its defaults.

    Unknown keys and wrongly typed values raise :class:`ConfigError` naming the dotted key.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in fields:
            raise _unknown_key(k, prefix, fields)
    kwargs = {k: coerce(v, hints[k], _join(prefix, k)) for k, v in data.items()}
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required key(s) {[_join(prefix, m) for m in missing]}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own __post_init__ checks
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from e


def to_dict(obj: Any) -> Any:
    """Dataclasses (nested) -> plain dicts/lists of primitives (YAML/JSON/checkpoint safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------------------------


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.width=64"]`` -> ``{"train.lr": "1e-3", ...}`` (YAML-parsed)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key part")
        try:
            out[key] = _yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key!r}: cannot parse value {raw!r}: {e}") from e
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested mapping (a copy); intermediate mappings are created."""
    out = _deepcopy(dict(data))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {dotted!r}: {'.'.join(parts[:i + 1])!r} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, Mapping):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping document is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        doc = _yaml_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(doc).__name__}")
    return doc
