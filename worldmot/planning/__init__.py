"""Planning in imagination: CEM / MPPI over action chunks (planner.py), settings (config.py)."""
from worldmot.planning.config import PlannerConfig
from worldmot.planning.planner import Planner, goal_distance

__all__ = ["Planner", "PlannerConfig", "goal_distance"]
