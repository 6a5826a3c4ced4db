"""Named extension points: scheduler policies, mu schedules, reward components, task sources and
built-in generators.

A registry maps a config name (``scheduler.policy: {type: adaptive}``) to what implements it.
Implementations register themselves where they are defined::

    @POLICIES.register("joint")
    class Joint(Policy): ...

Each registry lives beside its base class, in the lowest layer that reads it: ``POLICIES``
(scheduler/policies/), ``MU_SCHEDULES`` (scheduler/mu.py), ``LOSSES`` (objectives/losses.py),
``ADVANTAGES`` (objectives/advantages.py), ``REWARDS`` (rewards/base.py), ``SOURCES``
(sources/base.py), ``GENERATORS`` (sources/builtin.py). Every registered class declares its own
parameters beside it (a pydantic model: the class itself for rewards and sources, its ``Params``
for the others), chosen in a config by ``type``.

The config validates a name against the registry at load time (so a class registered by a test or
a plugin is a valid name too), and an unknown name gets one error that lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, PydanticKnownError, core_schema

from spectrum_rl.errors import ConfigError, did_you_mean

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Registry(Generic[T]):
    """``name -> T``, in registration order. ``what`` names an entry in messages ("policy");
    ``hint(name)`` adds to the message for a name that is not registered (or returns "")."""

    def __init__(self, what: str, hint: Callable[[str], str] | None = None) -> None:
        self.what = what
        self.hint = hint
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make ``name`` resolve to the decorated class (or whatever the registry holds)."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' is already registered")
            self._entries[name] = entry
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a temporary entry)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries  # a YAML value may be a list: unhashable

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def unknown(self, name: object) -> str:
        """The one-line message for a name that is not registered."""
        hint = self.hint(name) if self.hint is not None and isinstance(name, str) else ""
        return (
            f"unknown {self.what} '{name}'{hint or did_you_mean(name, self._entries)}; "
            f"expected one of {', '.join(self._entries)}"
        )

    def check(self, name: str) -> str:
        """``name`` when registered; else a pydantic error (for field validators) with the message."""
        if name not in self:
            raise _unknown_name(self.unknown(name))
        return name

    def get(self, name: str, field: str | None = None) -> T:
        """The entry for ``name``; a ConfigError listing the valid names when there is none."""
        if name not in self:
            raise ConfigError(self.unknown(name), field=field)
        return self._entries[name]


def _unknown_name(message: str) -> PydanticCustomError:
    """The pydantic error the config loader shows as ``message`` alone (config/messages.py)."""
    return PydanticCustomError("unknown_name", "{message}", {"message": message})


class Registered(Generic[M]):
    """Pydantic metadata for a config entry chosen by its ``type``: ``Annotated[Base,
    Registered(REGISTRY)]`` validates a mapping as the model of the entry ``REGISTRY`` holds under
    its ``type``: the entry itself when it is a model (reward components, sources), else its
    ``Params`` (policies, mu schedules, losses, advantage estimators: each declares its own
    parameters beside its code). With ``shorthand`` a bare name stands for ``{type: name}``.

    The class is looked up when a config is validated, not when the schema is built (as a
    discriminated union would), so a class registered later, by a test or a plugin, is valid."""

    def __init__(self, registry: Registry, shorthand: bool = False, formerly: str | None = None) -> None:
        self.registry = registry
        self.shorthand = shorthand
        self.formerly = formerly  # the key that named the entry before `type` did

    def model_for(self, value: object) -> type[M] | None:
        """The model of the registered entry that ``value["type"]`` names, or None."""
        name = value.get("type") if isinstance(value, dict) else None
        return params_model(self.registry.get(name)) if name in self.registry else None

    def __get_pydantic_core_schema__(self, source: type[M], handler: GetCoreSchemaHandler) -> CoreSchema:
        def validate(value: Any) -> M:
            if isinstance(value, source):
                return value
            if self.shorthand and isinstance(value, str):
                value = {"type": value}
            if not isinstance(value, dict):
                raise PydanticKnownError("dict_type")
            if self.formerly is not None and "type" not in value:
                renamed(value, self.formerly, f"write type: {value.get(self.formerly)}")
            model = self.model_for(value)
            if model is None:
                message = (
                    self.registry.unknown(value["type"])
                    if "type" in value
                    else f"missing 'type'; expected one of {', '.join(self.registry)}"
                )
                # Raised as a ValidationError so that pydantic locates it at the `type` key.
                error = {"type": _unknown_name(message), "loc": ("type",), "input": value.get("type")}
                raise ValidationError.from_exception_data(source.__name__, [error])
            return model.model_validate(value)

        return core_schema.no_info_plain_validator_function(validate)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """One alternative per registered name, told apart by the constant ``type``."""
        alternatives = []
        for name, entry in self.registry.items():
            schema = handler(params_model(entry).__pydantic_core_schema__)
            alternatives.append({"allOf": [schema], "properties": {"type": {"const": name}}})
        return {"oneOf": alternatives}


def params_model(entry: Any) -> type[BaseModel]:
    """The model that validates an entry's config: the entry when it is one, else its ``Params``."""
    return entry if isinstance(entry, type) and issubclass(entry, BaseModel) else entry.Params


def renamed(data: Any, old: str, new: str) -> None:
    """A located config error when ``data`` (a section's raw mapping) still uses the key ``old``,
    saying how it is spelled now (``new``)."""
    if isinstance(data, dict) and old in data:
        refuse(old, f"'{old}' is gone: {new}", data[old])


def refuse(key: str, message: str, value: Any) -> None:
    """Raise a config error located at ``key`` of the section being validated (from a ``before``
    validator, which would otherwise locate it at the section)."""
    error = {"type": _unknown_name(message), "loc": (key,), "input": value}
    raise ValidationError.from_exception_data("refused", [error])
