"""The constitution: natural-language harmful and harmless categories for the classifiers.

As in Constitutional Classifiers (Sharma et al., 2025), the constitution is the document from
which synthetic training data is generated; its hash goes into every guard bundle.
"""

from swisscheese.constitution.loader import (
    ConstitutionError,
    Problem,
    default_constitution,
    default_constitution_text,
    load_constitution,
    parse_constitution,
    world_references,
)
from swisscheese.constitution.schema import Category, Constitution

__all__ = ["Category", "Constitution", "ConstitutionError", "Problem", "default_constitution",
           "default_constitution_text", "load_constitution", "parse_constitution",
           "world_references"]
