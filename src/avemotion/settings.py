"""Settings declared once: a field's default and its one line of help live in its dataclass.

The command line reads both from there (see :mod:`avemotion.cli`), so a default is never restated
and the help never drifts from the code. Each stage's settings live with the stage
(:class:`~avemotion.media.features.FeatureSettings`, :class:`~avemotion.registry.ModelSettings`,
:class:`~avemotion.datasets.synth.SynthSettings`), except those of the stages whose modules import the
deep-learning or web stack, which are in :mod:`avemotion.config`.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field, fields
from typing import Any


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its default and the help line the command line shows for it."""
    return field(default=default, metadata={"help": help})


def setting_field(settings_class: type, name: str) -> Field:
    """The declared field `name` of a settings dataclass."""
    for declared in fields(settings_class):
        if declared.name == name:
            return declared
    raise KeyError(f"{settings_class.__name__} has no setting {name!r}")


def default_of(settings_class: type, name: str) -> Any:
    """A setting's declared default."""
    declared = setting_field(settings_class, name)
    if declared.default is MISSING:
        raise KeyError(f"{settings_class.__name__}.{name} has no default")
    return declared.default


def help_of(settings_class: type, name: str) -> str:
    """A setting's declared help line."""
    return setting_field(settings_class, name).metadata.get("help", "")

