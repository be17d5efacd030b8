"""SkewScout (docs/reference.md §5): models travel between partitions to estimate the accuracy loss
that skew causes, and a controller moves the algorithm's communication knob to keep it small.

``scout`` holds the traveling and the training callback; ``controller`` the knob controller;
``host`` what SkewScout needs from an engine (``ScoutHost``) and its Trainer adapter.
"""

from training.skewscout.controller import (
    DEFAULT_GRIDS,
    KNOBS,
    ControllerConfig,
    Decision,
    Knob,
    KnobController,
    ordered_grid,
)
from training.skewscout.host import ScoutHost, TrainerHost
from training.skewscout.scout import SkewScout, SkewScoutConfig, TravelReport, scout_config

__all__ = ["DEFAULT_GRIDS", "KNOBS", "ControllerConfig", "Decision", "Knob", "KnobController",
           "ScoutHost", "SkewScout", "SkewScoutConfig", "TrainerHost", "TravelReport",
           "ordered_grid", "scout_config"]
