"""Python objects a run was given instead of files: a model, a domain's rows, a reward function.

``srl.train(model=..., domains=[srl.Domain(name, data=..., reward=fn)])`` builds a run config as
the YAML would, and a config holds only plain data. So each object is held here, in this process,
under a key; the config names the key (``model: {name_or_path: "object:model-1"}``, a source
``{type: rows, key: ...}``, a reward ``{type: function, key: ...}``) and what builds the run looks
it up (``held``). A config naming a key this process does not hold (a run resumed in a new
process from its config.yaml) is a one-line error saying to pass the objects again.
"""

from __future__ import annotations

import itertools
from typing import Any

from spectrum_rl.errors import ConfigError

_HELD: dict[tuple[str, str], Any] = {}
_counter = itertools.count(1)


def hold(kind: str, obj: Any, name: str = "") -> str:
    """Keep ``obj`` for this process; returns its key (``kind`` groups keys: model, rows, function)."""
    key = f"{name or kind}-{next(_counter)}"
    _HELD[kind, key] = obj
    return key


def held(kind: str, key: str, field: str) -> Any:
    """The object held under ``key``; a ConfigError naming ``field`` when this process holds none."""
    if (kind, key) not in _HELD:
        raise ConfigError(
            f"'{key}' names a {kind} given to spectrum_rl.train in another process; this process holds none: "
            "call spectrum_rl.train with the same objects again (resume=True continues the run)",
            field=field,
        )
    return _HELD[kind, key]
