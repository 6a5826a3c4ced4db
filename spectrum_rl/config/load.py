"""Loading a run config: YAML (safe loader), ``extends``, command-line overrides, validation and
the rules that span fields.

``load_config(path)`` reads YAML with a safe loader, merges its ``extends`` chain, applies
``--set`` overrides, validates the result against ``Config`` and checks cross-field rules (unique
domain names, known and acyclic prerequisites). Any problem raises a ``ConfigError`` that names the
file (or the override), the YAML path of the field, the line/column when known, what was expected
and what was found.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from spectrum_rl.config.launcher import wants_sharding
from spectrum_rl.config.messages import format_path, from_pydantic, kind_of, locate, show, split_path
from spectrum_rl.config.schema import Config
from spectrum_rl.errors import ConfigError, did_you_mean
from spectrum_rl.models import BUILTIN_PREFIX, OBJECT_PREFIX, check_builtin_name, looks_local, resolve_local
from spectrum_rl.scheduler.graph import find_cycle
from spectrum_rl.scheduler.policies import POLICIES


@dataclass(frozen=True)
class Override:
    """One change to the loaded config: ``value`` at the YAML ``path`` (``["training", "steps"]``);
    ``shown`` is how the user typed it, for error messages (``--set training.steps=50``)."""

    path: list
    value: Any
    shown: str

    def apply(self, data: dict) -> None:
        """Set the value in the config mapping, creating mappings on the way."""
        cur: Any = data
        for i, part in enumerate(self.path[:-1]):
            nxt = self.path[i + 1]
            if isinstance(cur, dict):
                if not isinstance(cur.get(part), (dict, list)):
                    cur[part] = {}
                cur = cur[part]
            elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                cur = cur[part]
            else:
                raise ConfigError(
                    f"no such field: {format_path(self.path[: i + 1])} is not in the config",
                    file=self.shown,
                    field=format_path(self.path[: i + 1]),
                )
            if isinstance(nxt, int) and not isinstance(cur, list):
                raise ConfigError(
                    f"{format_path(self.path[: i + 1])} is not a list",
                    file=self.shown,
                    field=format_path(self.path[: i + 1]),
                )
        last = self.path[-1]
        if isinstance(cur, list) and not (isinstance(last, int) and 0 <= last < len(cur)):
            raise ConfigError(f"no such item: {format_path(self.path)}", file=self.shown, field=format_path(self.path))
        cur[last] = copy.deepcopy(self.value)


def parse_override(text: str, flag: str = "--set") -> Override:
    """``"training.steps=50"`` -> Override; the value is read as YAML (``50``, ``true``, ``[a, b]``,
    ``{schedule: cosine}``, ``null``)."""
    shown = f"{flag} {text}"
    key, sep, raw = text.partition("=")
    path = split_path(key.strip())
    if not sep or not path:
        raise ConfigError("expected FIELD=VALUE, e.g. --set training.steps=50", file=shown)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"the value is not valid YAML ({str(exc).splitlines()[0]})", file=shown, field=format_path(path)
        ) from None
    return Override(path, value, shown)


def _check_duplicate_keys(node: yaml.Node | None, path: list) -> None:
    """Reject a key given twice in one mapping (PyYAML silently keeps the last), naming its field."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(
                    f"duplicate key '{key}' (first at line {seen[key].start_mark.line + 1})",
                    field=format_path([*path, key]),
                    line=key_node.start_mark.line + 1,
                    column=key_node.start_mark.column + 1,
                )
            seen[key] = key_node
            _check_duplicate_keys(value, [*path, key])
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, [*path, i])


def read_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Read a YAML file safely; return (data, composed node tree for locating fields)."""
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise ConfigError("file not found" if not path.exists() else "not a file", file=shown)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", file=shown) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicate_keys(node, [])
        data = yaml.safe_load(text)  # the safe loader only: no tags that build Python objects
    except ConfigError as exc:
        raise exc.located(file=shown) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(
            f"YAML syntax error: {what}",
            file=shown,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=shown) from exc
    return data, node


def load_config(path: str | Path | Mapping[str, Any], overrides: Sequence[Override | str] = ()) -> Config:
    """Read, validate and cross-check a run config (a YAML file, or its sections as a mapping).
    Raises ConfigError (one line) on any problem.

    A top-level ``extends: other.yaml`` (relative to this file) loads that config first and
    merges this one over it: mappings merge key by key, everything else (lists included) replaces.
    ``overrides`` (``"training.steps=50"`` or ``Override``) are applied last and validated like
    the file; an error in a field an override set names the override instead of a line.
    """
    if isinstance(path, Mapping):  # errors name the field; there is no file or line
        shown, data, node = "<config mapping>", copy.deepcopy(dict(path)), None
    else:
        shown = str(path)
        data, node = _read_mapping(Path(path), seen=())
    overrides = [o if isinstance(o, Override) else parse_override(o) for o in overrides]
    for override in overrides:
        override.apply(data)
    model = data.get("model")
    if node is not None and isinstance(model, dict) and isinstance(model.get("name_or_path"), str):
        # a relative model folder is the config file's, as a data file or a reward model is
        model["name_or_path"] = resolve_local(model["name_or_path"], Path(path).resolve().parent)
    try:
        config = Config.model_validate(data)
        check_cross_fields(config)
        _check_custom_arms(data, config)
    except ValidationError as exc:
        raise blame(from_pydantic(exc, data, node, shown), overrides) from None
    except ConfigError as exc:
        if node is None:
            raise blame(exc.located(file=shown), overrides) from None
        raise locate_error(exc, path, overrides, node) from None
    return config


def _read_mapping(path: Path, seen: tuple[Path, ...]) -> tuple[dict, yaml.Node | None]:
    """The file's mapping with its ``extends`` chain merged in (base first)."""
    shown = str(path)
    data, node = read_yaml(path)
    if data is None:
        raise ConfigError("the file is empty; a config needs at least a `domains:` list", file=shown)
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of sections at the top level; found {kind_of(data)}", file=shown, line=1, column=1
        )
    base = data.pop("extends", None)
    if base is None:
        return data, node
    line, col = locate(node, ["extends"])
    if not isinstance(base, str):
        raise ConfigError(
            f"expected a file path; found {show(base)}", file=shown, field="extends", line=line, column=col
        )
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"'{base}' extends itself (cycle)", file=shown, field="extends", line=line, column=col)
    try:
        base_data, _ = _read_mapping(base_path, (*seen, path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"in '{base}': {exc}", file=shown, field="extends", line=line, column=col) from None
    return merge_config(base_data, data), node


def merge_config(base: dict, over: dict) -> dict:
    """``over`` laid over ``base`` (a new dict): mappings merge key by key, other values replace. A
    registered entry (a policy, mu schedule, loss, ...) given as another ``type``, or by its bare
    name, replaces the one below: another type's parameters would not fit it."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        below = out.get(key)
        if (
            isinstance(value, dict)
            and isinstance(below, dict)
            and value.get("type", below.get("type")) == below.get("type")
        ):
            out[key] = merge_config(below, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def locate_error(
    err: ConfigError, path: str | Path, overrides: Sequence[Override] = (), node: yaml.Node | None = None
) -> ConfigError:
    """Fill in the file, line and column of an error raised after loading (e.g. building domains);
    an error in a field that an override set names the override."""
    if node is None:
        try:
            _, node = read_yaml(path)
        except ConfigError:
            node = None
    line, col = locate(node, split_path(err.field)) if err.field else (None, None)
    return blame(err.located(file=str(path), line=line, column=col), overrides)


def blame(err: ConfigError, overrides: Sequence[Override]) -> ConfigError:
    """``err`` located at the last override whose path contains its field (or lies inside it)."""
    if not err.field:
        return err
    field = split_path(err.field)
    for override in reversed(overrides):
        n = min(len(field), len(override.path))
        if field[:n] == override.path[:n]:
            return ConfigError(err.message, file=override.shown, field=err.field)
    return err


def check_cross_fields(config: Config) -> None:
    """Rules across fields: unique names, known prerequisites, no cycles, known weight keys."""
    names = config.domain_names
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise ConfigError(
                f"duplicate domain name '{name}' (also domains[{first[name]}])", field=f"domains[{i}].name"
            )
        first[name] = i
    for i, task in enumerate(config.domains):
        for j, dep in enumerate(task.after):
            if dep == task.name:
                raise ConfigError(f"domain '{dep}' cannot be its own prerequisite", field=f"domains[{i}].after[{j}]")
            if dep not in first:
                raise ConfigError(
                    f"unknown domain '{dep}'{did_you_mean(dep, names)}; expected one of {', '.join(names)}",
                    field=f"domains[{i}].after[{j}]",
                )
    cycle = find_cycle({t.name: t.after for t in config.domains})
    if cycle:
        raise ConfigError(
            "prerequisite cycle " + " -> ".join(cycle + [cycle[0]]), field=f"domains[{first[cycle[0]]}].after"
        )
    for key in config.training.sft.per_domain:
        if key not in first:
            raise ConfigError(
                f"unknown domain '{key}'{did_you_mean(key, names)}", field=f"training.sft.per_domain.{key}"
            )
    policy = config.scheduler.policy
    for key in getattr(policy, "weights", None) or {}:
        if key not in first:
            raise ConfigError(
                f"unknown domain '{key}'{did_you_mean(key, names)}", field=f"scheduler.policy.weights.{key}"
            )
    order = getattr(policy, "order", None) or []
    for j, name in enumerate(order):
        if name not in first:
            raise ConfigError(
                f"unknown domain '{name}'{did_you_mean(name, names)}", field=f"scheduler.policy.order[{j}]"
            )
    if order and sorted(order) != sorted(names):
        raise ConfigError(
            f"must list every domain once; missing or repeated: "
            f"{', '.join(sorted(set(names) ^ set(order)) or sorted(n for n in order if order.count(n) > 1))}",
            field="scheduler.policy.order",
        )
    position = {n: i for i, n in enumerate(order)}
    for task in config.domains if order else []:
        for dep in task.after:
            if position[dep] > position[task.name]:
                raise ConfigError(
                    f"'{task.name}' comes before its prerequisite '{dep}'",
                    field=f"scheduler.policy.order[{position[task.name]}]",
                )
    _check_reward_timeouts(config)
    if wants_sharding(config.training.sharding):
        check_sharding(config)
    _check_model_path(config.model.name_or_path)


def _check_custom_arms(data: dict, config: Config) -> None:
    """Each of the study's custom arms, laid over this config, is a valid config: an old spelling or
    a typo in an arm fails when the config loads, not when the study reaches the arm."""
    for name, overlay in config.study.custom_arms.items():
        merged = merge_config(data, overlay)
        try:
            check_cross_fields(Config.model_validate(merged))
        except ValidationError as exc:
            err = from_pydantic(exc, merged, None, "")
            raise ConfigError(err.message, field=f"study.custom_arms.{name}.{err.field}") from None
        except ConfigError as err:
            raise err.under(f"study.custom_arms.{name}.") from None


def _check_reward_timeouts(config: Config) -> None:
    """A reward's `timeout_s` must leave time for a whole group (LUFFY's expert joins it) within the
    component's own limits, or groups that are only running their course would fail."""
    group = config.training.group_size + int(config.training.sft.luffy)
    for i, task in enumerate(config.domains):
        for j, spec in enumerate(task.reward):
            slowest = spec.slowest_group(group)
            if slowest is not None and spec.timeout_s is not None and spec.timeout_s < slowest[0]:
                need, how = slowest
                raise ConfigError(
                    f"timeout_s {spec.timeout_s:g} is shorter than a group of {group} completions may take by "
                    f"this component's own limits, {how} = {need:g} s; raise timeout_s to at least {need:g}, "
                    "or raise workers",
                    field=f"domains[{i}].reward[{j}].timeout_s",
                )


def check_sharding(config: Config) -> None:
    """What sharded training (trainer/sharding.py) does not do, named before any model is built."""
    training, scheduler = config.training, config.scheduler
    if training.lora is not None:
        raise ConfigError(
            "LoRA with sharding is not supported: use training.sharding: none (LoRA's trainable "
            "weights are small enough to replicate) or full fine-tuning",
            field="training.lora",
        )
    if training.decode_graphs is True:
        raise ConfigError(
            "CUDA graphs capture weight addresses, which sharding frees after each rollout: use "
            "decode_graphs: auto (off when sharded) or false",
            field="training.decode_graphs",
        )
    if scheduler.alignment_every and POLICIES.get(scheduler.policy.type).uses_alignment:
        raise ConfigError(
            f"the {scheduler.policy.type} policy's gradient alignment is not measured with sharded training (its "
            "per-domain gradients need whole parameters): set scheduler.alignment_every: 0",
            field="scheduler.alignment_every",
        )


def _check_model_path(name: str) -> None:
    """Fail early on a local model path that does not exist (hub ids are checked at load time)."""
    if name.startswith(BUILTIN_PREFIX):
        check_builtin_name(name)
        return
    if name.startswith(OBJECT_PREFIX):  # a model object, looked up when the run is built
        return
    if looks_local(name) and not Path(name).expanduser().exists():
        raise ConfigError(
            f"model folder '{name}' does not exist (a relative one is looked for next to the config file, then in "
            "the current directory)",
            field="model.name_or_path",
        )
