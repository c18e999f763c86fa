"""The model description: one typed view of a model that every estimate reads (see ``description``)."""

from .census import CensusEntry, census_of
from .describe import describe
from .description import MLA, Head, Layer, ModelDescription, MoE, Tower

__all__ = ["CensusEntry", "Head", "Layer", "MLA", "ModelDescription", "MoE", "Tower", "census_of", "describe"]
