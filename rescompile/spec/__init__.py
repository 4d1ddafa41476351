"""The spec language: schema, YAML loading with source positions, and `extends`."""

from rescompile.spec.loader import load_spec
from rescompile.spec.schema import Spec

__all__ = ["Spec", "load_spec"]
