"""``worldmot demo``: record, train, evaluate four policies and report, in one cached run folder (stages.py)."""
from worldmot.demo.config import DemoConfig
from worldmot.demo.stages import run_demo

__all__ = ["DemoConfig", "run_demo"]
