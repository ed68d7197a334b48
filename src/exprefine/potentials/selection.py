"""Choose which parameters of a torch module are trained: presets, glob and regex name patterns.

A selection is a pattern or a list of patterns, matched against the names of
``module.named_parameters()`` (names relative to ``module``, e.g.
``"readouts.1.linear_2.weight"`` for a MACE model):

* a preset name (see :func:`mace_presets` and :data:`GENERIC_PRESETS`) expands to its patterns;
* ``"re:<regex>"`` selects names where the regular expression is found (``re.search``);
* anything else is a glob (``fnmatch``, case-sensitive) matched against the whole name; a glob
  without wildcards also selects everything below that module path (``"readouts"`` selects
  ``"readouts.0.linear.weight"``).

Selected parameters get ``requires_grad=True``, all others ``requires_grad=False``. A pattern
that selects nothing is an error (it is almost always a typo).

Presets for MACE models (:func:`mace_presets`, ``n_interactions`` message-passing layers):

* ``"all"``: every parameter;
* ``"none"``: no parameter (a frozen model, e.g. for sampling only);
* ``"readouts"``: names containing ``"readouts"`` (the per-layer energy read-outs);
* ``"last_interaction"``: the last interaction block and its product (symmetric contraction)
  block, ``interactions.<n-1>.*`` and ``products.<n-1>.*``;
* ``"embedding"``: the species embedding ``node_embedding.*``;
* ``"radial"``: the radial MLPs of all interactions (names containing ``"conv_tp_weights"``).

Presets combine: ``["readouts", "last_interaction"]`` trains the last layer and all read-outs.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Mapping, Sequence

from torch import nn

#: Presets that make sense for any module.
GENERIC_PRESETS: dict[str, tuple[str, ...]] = {"all": ("*",), "none": ()}

_WILDCARDS = set("*?[")


def mace_presets(n_interactions: int) -> dict[str, tuple[str, ...]]:
    """Named parameter selections of a MACE model with ``n_interactions`` layers (see module doc)."""
    if n_interactions < 1:
        raise ValueError(f"a MACE model has at least one interaction, got {n_interactions}")
    last = n_interactions - 1
    return {
        **GENERIC_PRESETS,
        "readouts": ("re:readouts",),
        "last_interaction": (f"interactions.{last}", f"products.{last}"),
        "embedding": ("node_embedding",),
        "radial": ("re:conv_tp_weights",),
    }


def normalize_patterns(patterns: str | Sequence[str]) -> list[str]:
    """A single pattern or a list of them as a list (a bare string is one pattern)."""
    if isinstance(patterns, str):
        return [patterns]
    out = list(patterns)
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"parameter patterns must be strings, got {p!r}")
    return out


def matches(name: str, pattern: str) -> bool:
    """Whether one parameter ``name`` is selected by one (non-preset) ``pattern``."""
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return not (_WILDCARDS & set(pattern)) and name.startswith(pattern.rstrip(".") + ".")


def expand_presets(patterns: str | Sequence[str], presets: Mapping[str, Sequence[str]]) -> list[str]:
    """Patterns with preset names replaced by the patterns they stand for."""
    out: list[str] = []
    for p in normalize_patterns(patterns):
        out.extend(presets[p] if p in presets else [p])
    return out


def selected_names(
    module: nn.Module,
    patterns: str | Sequence[str],
    presets: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Names of the parameters of ``module`` selected by ``patterns``, in module order.

    Raises:
        ValueError: if a pattern (other than the preset ``"none"``) selects no parameter.
    """
    presets = GENERIC_PRESETS if presets is None else presets
    names = [n for n, _ in module.named_parameters()]
    chosen: set[str] = set()
    for raw in normalize_patterns(patterns):
        expanded = expand_presets(raw, presets)
        hit = {n for n in names for p in expanded if matches(n, p)}
        if not hit and expanded:
            preview = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            known = ", ".join(sorted(presets))
            raise ValueError(
                f"trainable pattern {raw!r} matches no parameter (presets: {known}; names look like: {preview})"
            )
        chosen |= hit
    return [n for n in names if n in chosen]


def select_trainable(
    module: nn.Module,
    patterns: str | Sequence[str],
    presets: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Set ``requires_grad`` of every parameter of ``module``: True where selected, False elsewhere.

    Args:
        module: any torch module; names are those of ``module.named_parameters()``.
        patterns: a preset name, a glob, ``"re:<regex>"``, or a list of them (see module doc).
        presets: preset name -> patterns; :data:`GENERIC_PRESETS` when None.

    Returns:
        The names of the trainable parameters, in module order.
    """
    chosen = set(selected_names(module, patterns, presets))
    for name, param in module.named_parameters():
        param.requires_grad_(name in chosen)
    return [n for n, _ in module.named_parameters() if n in chosen]


__all__ = [
    "GENERIC_PRESETS",
    "mace_presets",
    "normalize_patterns",
    "matches",
    "expand_presets",
    "selected_names",
    "select_trainable",
]
