"""Planner settings (configs/plan/*.yaml)."""
from __future__ import annotations

from dataclasses import dataclass

from worldmot.errors import WorldmotError


@dataclass
class PlannerConfig:
    method: str = "cem"  # cem | mppi
    cost: str = "progress"  # progress: the model's predicted task progress (language only) | goal: goal image
    horizon: int = 2  # imagined frame steps, one action chunk each (at most the model's n_steps - 1)
    candidates: int = 32  # action sequences imagined per iteration, per env
    iterations: int = 2  # refits of the sampling distribution per replanning step
    elites: int = 6  # the best candidates that refit the mean and std
    temperature: float = 0.5  # mppi: elite weights softmax(z / temperature), z = scores rescaled to [-1, 0]
    init_std: float = 0.7  # of the sampling distribution, in action units
    min_std: float = 0.05  # floor of the sampling std, in action units (keeps exploring)
    execute: int = 1  # chunks executed before replanning (receding horizon)
    flow_steps: int = 1  # denoising steps per imagined frame (the x0 estimate is enough for costs)
    ar_proposals: int = 0  # candidates sampled from the model's own AR policy in the first iteration
    constant_chunks: bool = True  # one action per chunk, repeated C times (what the experts produce)
    final_weight: float = 1.0  # cost = -(mean over the horizon + final_weight * last) of the score
    # cost=goal: weight of the change in the imagined frame's sorted pixel values from the current frame's.
    # Objects do not vanish; a model unsure where the effector goes draws a faint ghost, which is nearer a
    # distant goal image than a disc in the wrong place (tools/probes/goal_cost.py; docs/notes/goal-cost.md)
    keep_weight: float = 5.0
    # cost=goal: weight of the imagined frame's pixel distance to the goal image (goal_distance). 0 where the
    # keypoints say it all: on Reacher-v5 the imagined arm ignores the joint velocities, and its pixels only
    # add noise to a cost on the predicted fingertip
    pixel_weight: float = 1.0
    # cost=goal: weight of the distance (WorldModel.state_distance) between the state the model reads off an
    # imagined frame and off the goal image, each dimension weighted by how well the model reads it (held-out
    # R^2). 0: pixels only (docs/notes/goal-cost.md)
    state_weight: float = 10.0
    # cost=goal: weight of the distance between the keypoints (named objects, effector) read off each imagined
    # frame and off the goal image (worldmot/planning/object_cost.py); needs a model trained with keypoints
    object_weight: float = 0.0
    # the pushing prior (object_cost.py), 0: off. Effector-to-object distance at contact, as a fraction of
    # the image side (Push: block 0.05 + effector 0.03 m of a 1 m view); push_tolerance: an object this
    # close to its goal position counts as there
    push_distance: float = 0.0
    push_tolerance: float = 0.04  # an object this close to its goal position (fraction of the image side) is there
    # cost=goal, object_weight > 0: also price where the effector would be this many chunks after each imagined
    # chunk at that chunk's velocity (object_cost.lead_distance), 0: off. For torque-controlled arms
    lead_chunks: float = 0.0
    # cost=goal, object_weight > 0: price where the model predicts the keypoints at each chunk's [EOA]
    # (ModelConfig.lambda_keypoint_ahead) where it has them, instead of reading them off the imagined frame
    predicted_objects: bool = True
    push_object: int = 0  # which named object the effector pushes (keypoint order: the instruction's subject first)
    # where the effector must go: -1, where the model places it on the goal image; k >= 0, onto named object k
    # there (tasks whose goal is the effector on a target: Reach, Reacher-v5), where on the goal image the two
    # overlap and the effector is read less well than the target (docs/notes/reacher.md)
    effector_goal: int = -1
    # on CUDA, replay each imagination forward as a captured CUDA graph (worldmot/model/cuda_graphs.py): a
    # replanning step is otherwise bound by launching hundreds of tiny kernels. No effect on the CPU
    cuda_graphs: bool = True
    seed: int = 0  # seeds the planner's sampling

    def check(self, n_steps: int) -> None:
        """Raise a one-line error naming the key for settings the model cannot serve."""
        if self.method not in ("cem", "mppi"):
            raise WorldmotError(f"plan.method={self.method!r}: expected 'cem' or 'mppi'")
        if self.cost not in ("progress", "goal"):
            raise WorldmotError(f"plan.cost={self.cost!r}: expected 'progress' or 'goal'")
        if not 1 <= self.horizon <= max(1, n_steps - 1):
            raise WorldmotError(f"plan.horizon={self.horizon}: the model imagines at most {max(1, n_steps - 1)} "
                                "steps in one window (its n_steps - 1)")
        if not 1 <= self.execute <= self.horizon:
            raise WorldmotError(f"plan.execute={self.execute}: expected 1 to plan.horizon ({self.horizon})")
        if self.candidates < 2 or not 1 <= self.elites <= self.candidates:
            raise WorldmotError(f"plan.elites={self.elites}, plan.candidates={self.candidates}: "
                                "expected 2 <= candidates and 1 <= elites <= candidates")
        if self.pixel_weight < 0:
            raise WorldmotError(f"plan.pixel_weight={self.pixel_weight}: expected >= 0")
        if self.object_weight < 0 or self.push_distance < 0 or self.push_tolerance < 0:
            raise WorldmotError(f"plan.object_weight={self.object_weight}, plan.push_distance={self.push_distance}, "
                                f"plan.push_tolerance={self.push_tolerance}: expected >= 0")
        if self.lead_chunks < 0:
            raise WorldmotError(f"plan.lead_chunks={self.lead_chunks}: expected >= 0")
        if self.effector_goal < -1:
            raise WorldmotError(f"plan.effector_goal={self.effector_goal}: expected -1 (its own place on the goal "
                                "image) or a named object's index")
        if self.push_object < 0:
            raise WorldmotError(f"plan.push_object={self.push_object}: expected >= 0")
        if self.iterations < 1:
            raise WorldmotError(f"plan.iterations={self.iterations}: expected >= 1")
