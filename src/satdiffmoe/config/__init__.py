"""Experiment configs: typed schema (`schema`) and composition/validation (`loading`)."""

from .loading import (
    as_plain,
    check_values,
    config_from_dict,
    load_config,
    parse_overrides,
    to_yaml,
    with_overrides,
)
from .schema import ExperimentConfig

__all__ = ["ExperimentConfig", "as_plain", "check_values", "config_from_dict", "load_config",
           "parse_overrides", "to_yaml", "with_overrides"]
