"""Synthetic imaging-genetics studies with a known truth (``bgs-simulate``).

This package shares no code with the pipeline it is the truth for: it has its own
head model, deformations and resampling (torch), so that the pipeline's errors
cannot cancel against the simulator's.
"""

from bgs_app.simulate.study import SimulationParams, simulate_study

__all__ = ["SimulationParams", "simulate_study"]
