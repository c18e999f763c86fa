"""Plots of the estimates: memory against context or batch when serving, training memory by phase.

``hfmem.plot.curves`` holds the data (dataclasses, JSON-ready); ``hfmem.plot.figure`` draws it with matplotlib
(an optional extra, ``pip install 'hfmem[plot]'``), imported only when a figure is made. Importing this package
imports neither matplotlib nor torch.
"""

from .curves import SCHEMA, CapacityLine, PhaseChart, ServingCurve, default_values, phase_chart, plot_json

__all__ = ["SCHEMA", "CapacityLine", "PhaseChart", "ServingCurve", "default_values", "phase_chart", "plot_json"]
