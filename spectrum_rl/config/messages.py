"""Configuration errors as one line: a pydantic ValidationError, located in the YAML file.

``from_pydantic`` picks the error a user should fix first (an unknown key before the "missing"
error it causes), names the field as a YAML path (``domains[2].reward[0].type``), finds its line and
column in the composed YAML node tree, and phrases it as "expected ...; found ..." with a
"did you mean" for near-miss names.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Union

import yaml
from pydantic import ValidationError

from spectrum_rl.config.schema import Config
from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.registry import Registered, params_model

# GRPOConfig's names for fields this config names otherwise: an unknown key that is one of them says where
# it lives here (users arrive with TRL configs)
TRL_NAMES = {
    "num_generations": "training.group_size",
    "max_completion_length": "training.max_new_tokens",
    "max_steps": "training.steps",
    "epsilon": "training.loss.eps_low",
    "epsilon_high": "training.loss.eps_high",
    "loss_type": "training.loss (its type)",
    "scale_rewards": "training.advantage (its type)",
    "lr_scheduler_type": "training.lr_schedule",
    "save_steps": "training.save_every",
    "model_name_or_path": "model.name_or_path",
    "lora_r": "training.lora.r",
    "lora_alpha": "training.lora.alpha",
    "lora_dropout": "training.lora.dropout",
    "lora_target_modules": "training.lora.target_modules",
    "reward_weights": "each reward component's weight",
}


def trl_hint(key: str) -> str:
    """``"; TRL's KEY is FIELD here"`` for a GRPOConfig name, else ""."""
    return f"; TRL's {key} is {TRL_NAMES[key]} here" if key in TRL_NAMES else ""


def from_pydantic(exc: ValidationError, data: Any, node: yaml.Node | None, file: str) -> ConfigError:
    """The one-line ConfigError for the first error of ``exc`` (``data``: the validated input)."""
    errors = exc.errors()  # an unknown key first: a misspelt required key also shows up as missing
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path = _data_path(err["loc"], data)
    kind, found = err["type"], err.get("input")
    if kind == "extra_forbidden":
        key = path[-1]
        fields = list(_model_fields(path[:-1], data))
        near = trl_hint(str(key)) or did_you_mean(key, fields)  # a TRL name is no typo of a name here
        elsewhere = [] if near else [p for p in _section_paths(Config) if p.rsplit(".", 1)[-1] == key]
        near = near or (f"; it is a key of {', '.join(p.rsplit('.', 1)[0] for p in elsewhere)}" if elsewhere else "")
        near = near or _other_types_with(key, path[:-1], data)
        message = f"unknown key '{show_key(key)}'{near}; valid keys: {', '.join(fields)}"
    elif kind == "missing":
        message = f"missing required key '{path[-1]}'"
    elif kind == "unknown_name":  # a name or `type` checked against a registry (spectrum_rl/registry.py)
        message = err["msg"]
    elif kind == "literal_error":
        options = re.findall(r"'([^']+)'", err["ctx"]["expected"])
        message = f"expected one of {', '.join(options)}; found {show(found)}{did_you_mean(found, options)}"
    else:
        what = err["msg"]
        what = re.sub(r"^Value error, ", "", what)
        what = re.sub(r"^Input should be ", "expected ", what)
        what = re.sub(r"^(String|List|Dictionary|Value) should ", r"expected \1 to ", what)
        # a union such as int | Literal['auto']: name the literal alternatives too
        words = [
            o
            for e in errors
            if e["type"] == "literal_error" and _data_path(e["loc"], data) == path
            for o in re.findall(r"'([^']+)'", e["ctx"]["expected"])
        ]
        message = f"{what}{', or ' + ' or '.join(words) if words else ''}; found {show(found)}"
    line, col = locate(node, path)
    return ConfigError(message, file=file, field=format_path(path), line=line, column=col)


def _other_types_with(key: str, path: list, data: Any) -> str:
    """For an entry chosen by its ``type`` (a source, a reward component), the other types that take
    ``key`` (``path: ...`` under ``type: hub`` is a key of the file source): else ""."""
    tp, value = _raw_type(path, data)
    registries = [m.registry for m in typing.get_args(tp)[1:] if isinstance(m, Registered)]
    if typing.get_origin(tp) is not Annotated or not registries or not isinstance(value, dict):
        return ""
    registry = registries[0]
    takers = [
        name
        for name, entry in registry.items()
        if name != value.get("type") and key in getattr(params_model(entry), "model_fields", {})
    ]
    return f"; it is a key of {registry.what} {', '.join(takers)}" if takers else ""


def _section_paths(model: Any, prefix: str = "") -> list[str]:
    """Every key of the config's fixed sections, as dotted paths (``training.sft.luffy``); lists,
    mappings and registered entries (a policy's, a reward's own keys) are not walked."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        inner = [a for a in (field.annotation, *typing.get_args(field.annotation)) if hasattr(a, "model_fields")]
        if inner:
            items = typing.get_origin(field.annotation) is list  # a list of sections: domains[i]
            out += _section_paths(inner[0], f"{path}[i]." if items else f"{path}.")
    return out


def _data_path(loc: tuple, data: Any) -> list:
    """Drop pydantic's union-member tags from ``loc`` by walking the actual input data."""
    out: list = []
    cur = data
    for part in loc:
        if isinstance(cur, (dict, list)) and _has(cur, part):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and part in _model_fields(out, data):
            out.append(part)  # a required key that is missing
            break
    return out


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def _resolve(tp: Any, value: Any) -> Any:
    """Unwrap Annotated/Optional; a registered entry (``Registered``) is the class its ``value['type']`` names."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            base, *metadata = typing.get_args(tp)
            named = [m.model_for(value) for m in metadata if isinstance(m, Registered)]
            tp = next((model for model in named if model), base)
        elif origin in (Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _child_type(tp: Any, part: Any) -> Any:
    if hasattr(tp, "model_fields"):
        field = tp.model_fields.get(part)
        return None if field is None else field.rebuild_annotation()  # with its metadata (``Registered``)
    origin = typing.get_origin(tp)
    if origin is list:
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    return None


def _raw_type(path: list, data: Any) -> tuple[Any, Any]:
    """The (unresolved) schema annotation and the data value at ``path``."""
    tp, cur = Config, data
    for part in path:
        tp = _child_type(_resolve(tp, cur), part)
        cur = cur[part] if _has(cur, part) else None
    return tp, cur


def _model_fields(path: list, data: Any) -> list[str]:
    tp, cur = _raw_type(path, data)
    return list(getattr(_resolve(tp, cur), "model_fields", {}))


def locate(node: yaml.Node | None, path: list) -> tuple[int | None, int | None]:
    """Line/column (1-based) of the deepest YAML node along ``path``."""
    best = node
    cur = node
    for part in path:
        nxt = None
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                if k.value == str(part):
                    nxt = v if part != path[-1] or isinstance(v, (yaml.MappingNode, yaml.SequenceNode)) else k
                    break
        elif isinstance(cur, yaml.SequenceNode) and isinstance(part, int) and part < len(cur.value):
            nxt = cur.value[part]
        if nxt is None:
            break
        best = cur = nxt
    if best is None:
        return None, None
    return best.start_mark.line + 1, best.start_mark.column + 1


def format_path(path: list) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{show_key(part)}" if out else show_key(part))
    return out


def show_key(key: Any) -> str:
    """A YAML key as text for a one-line message (control characters escaped)."""
    text = str(key)
    return text if text.isprintable() else repr(text)[1:-1]


def split_path(field: str) -> list:
    return [int(p) if p.isascii() and p.isdigit() else p for p in re.findall(r"[^.\[\]]+", field)]


def kind_of(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return kind_of(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
