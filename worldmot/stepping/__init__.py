"""worldmot.stepping: one engine that steps (vector) envs with a policy, and the episodes it yields.

Above worldmot.envs and worldmot.policies (it drives one with the other); recording and evaluation build on it.
"""
from worldmot.stepping.engine import Step, run_episodes
from worldmot.stepping.episodes import Episode, EpisodeCollector, collect_episodes

__all__ = ["Episode", "EpisodeCollector", "Step", "collect_episodes", "run_episodes"]
