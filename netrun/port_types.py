"""Port types: which values a port accepts (SPEC "Port Types").

Forms accepted from Python (and, as strings, from the DSL):
- `"DataFrame"`: the value's class is named so (`type(value).__name__`);
- `"pandas:DataFrame"` / `"pandas.DataFrame"` or the class itself: `isinstance(value, cls)`;
- `{"class": C, "isinstance": True}`: the same; `{"class": C, "isinstance": False}`: `type(value) is C`;
- `{"class": C, "subclass": True}`: the value is itself a class and a subclass of `C`.

Checked when an input packet is consumed and when a packet is loaded into an output port;
a mismatch raises `PacketTypeMismatch` naming node, port, expected and actual type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

MODES = ("name", "isinstance", "exact", "subclass")


@dataclass(frozen=True)
class PortType:
    mode: str  # one of MODES
    name: str  # class name (mode "name") or import path "module:qualname"
    cls: type | None = None

    def accepts(self, value: Any) -> bool:
        if self.mode == "name":
            return type(value).__name__ == self.name
        if self.mode == "isinstance":
            return isinstance(value, self.cls)
        if self.mode == "exact":
            return type(value) is self.cls
        return isinstance(value, type) and issubclass(value, self.cls)

    def describe(self) -> str:
        label = self.name if self.mode == "name" else _short(self.cls)
        return {"name": f"a {label}", "isinstance": f"an instance of {label}",
                "exact": f"exactly a {label}", "subclass": f"a subclass of {label}"}[self.mode]

    def to_data(self) -> Any:
        """JSON/TOML form: a string for the simple cases, else a table."""
        if self.mode == "name":
            return self.name
        if self.mode == "isinstance":
            return {"class": self.name}
        if self.mode == "exact":
            return {"class": self.name, "isinstance": False}
        return {"class": self.name, "subclass": True}


def _short(cls: type | None) -> str:
    return getattr(cls, "__qualname__", repr(cls))


def _path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(path: str, where: str) -> type:
    from .factories import import_from_path

    try:
        target = import_from_path(path)
    except ConfigError as exc:
        raise ConfigError(f"{where}: cannot import port type class {path!r}: {exc}") from exc
    if not isinstance(target, type):
        raise ConfigError(f"{where}: port type {path!r} is not a class")
    return target


def parse(spec: Any, *, where: str) -> PortType:
    """Normalize any accepted form. Raises ConfigError naming `where` (node and port)."""
    if isinstance(spec, PortType):
        return spec
    return _checkable(_parse(spec, where=where), where)


def _checkable(port_type: PortType, where: str) -> PortType:
    """Refuse a class that isinstance()/issubclass() refuse (typing.Any, a Protocol that is not
    runtime_checkable): every packet would otherwise fail its epoch with a bare TypeError."""
    if port_type.cls is None or port_type.mode == "exact":
        return port_type
    try:
        port_type.accepts(None)
        port_type.accepts(object)
    except TypeError as exc:
        raise ConfigError(f"{where}: port type {port_type.name!r} cannot be checked: {exc}") from None
    return port_type


def _parse(spec: Any, *, where: str) -> PortType:
    if isinstance(spec, type):
        return PortType("isinstance", _path_of(spec), spec)
    if isinstance(spec, str):
        if ":" in spec or "." in spec:
            cls = _import_class(spec, where)
            return PortType("isinstance", _path_of(cls), cls)
        if not spec.isidentifier():
            raise ConfigError(f"{where}: port type {spec!r} is not a class name or import path")
        return PortType("name", spec)
    if isinstance(spec, dict):
        unknown = set(spec) - {"class", "isinstance", "subclass"}
        if unknown or "class" not in spec:
            raise ConfigError(f"{where}: a port type table needs 'class' and may have 'isinstance' or 'subclass' "
                              f"(got keys {sorted(spec)})")
        raw = spec["class"]
        if isinstance(raw, str):
            cls = _import_class(raw, where) if (":" in raw or "." in raw) else None
            if cls is None:
                raise ConfigError(f"{where}: port type class {raw!r} must be an import path "
                                  "('module:Class') in a table; use the plain string form to match by name")
        elif isinstance(raw, type):
            cls = raw
        else:
            raise ConfigError(f"{where}: port type 'class' must be a class or an import path, got {raw!r}")
        for key in ("isinstance", "subclass"):
            if key in spec and not isinstance(spec[key], bool):
                raise ConfigError(f"{where}: port type {key!r} must be true or false, got {spec[key]!r}")
        if spec.get("subclass"):
            if "isinstance" in spec:
                raise ConfigError(f"{where}: a port type is either 'isinstance' or 'subclass', not both")
            return PortType("subclass", _path_of(cls), cls)
        return PortType("isinstance" if spec.get("isinstance", True) else "exact", _path_of(cls), cls)
    raise ConfigError(f"{where}: unsupported port type {spec!r} (a class, a class name, an import path, or a "
                      "table with 'class')")


def from_data(data: Any, *, where: str) -> PortType:
    """Read back `PortType.to_data()` (used by resume): a type stored before `parse` refused unusable
    classes comes back as it was, so that such a net still resumes."""
    return data if isinstance(data, PortType) else _parse(data, where=where)
