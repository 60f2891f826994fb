"""worldmot.policies: one Policy protocol (base.py) and the policies behind it."""
from worldmot.policies.base import Policy, batch_size, is_batched, tasks_of
from worldmot.policies.factory import make_policy, policy_names, register_policy

__all__ = ["Policy", "batch_size", "is_batched", "make_policy", "policy_names", "register_policy", "tasks_of"]
