"""The Meta-World v3 tasks as worldmot names them: instructions (training and held-out wordings), the
difficulty groups of evaluation reports, and the MT10 set. Plain data: importing this module does not
import Meta-World, so that worldmot.envs can register the ids cheaply.

The order of TASKS is Meta-World's own (``metaworld.env_dict.ALL_V3_ENVIRONMENTS``); a task's index in it is
the last value of the env's ``environment_state`` (the experts read it, see metaworld_expert.py).
The groups are the difficulty split of Seo et al. (2022) that LeRobot's Meta-World evaluation reports by.
"""
from __future__ import annotations

# task -> (training wordings, held-out wordings); the held-out ones are for evaluation only
INSTRUCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "assembly-v3": (("pick up the nut and put it on the peg", "place the ring nut onto the peg"),
                    ("slide the nut down over the peg",)),
    "basketball-v3": (("dunk the ball into the basket", "put the basketball in the hoop"),
                      ("score a basket with the ball",)),
    "bin-picking-v3": (("move the puck from one bin to the other", "pick the puck out of the bin and drop it in the other bin"),
                       ("transfer the puck between the bins",)),
    "box-close-v3": (("put the lid on the box", "close the box with its cover"),
                     ("cover the box",)),
    "button-press-topdown-v3": (("press the button from the top", "push the button down from above",
                                 "press down on the button"),
                                ("hit the button from above", "push the button straight down")),
    "button-press-topdown-wall-v3": (("press the button from the top behind the wall", "reach over the wall and press the button down"),
                                     ("push the button down past the wall",)),
    "button-press-v3": (("press the button", "push the button in"),
                        ("poke the button",)),
    "button-press-wall-v3": (("get around the wall and press the button", "press the button behind the wall"),
                             ("push the button past the wall",)),
    "coffee-button-v3": (("press the button on the coffee machine", "push the coffee machine's button"),
                         ("start the coffee machine",)),
    "coffee-pull-v3": (("pull the mug out from the coffee machine", "take the mug away from the coffee machine"),
                       ("draw the cup back from the machine",)),
    "coffee-push-v3": (("push the mug under the coffee machine", "slide the mug below the coffee spout"),
                       ("put the cup under the machine",)),
    "dial-turn-v3": (("turn the dial", "rotate the dial half a turn"),
                     ("twist the knob around",)),
    "disassemble-v3": (("pick the nut off the peg", "lift the ring nut off the peg"),
                       ("take the nut off",)),
    "door-close-v3": (("close the door", "push the door shut"),
                      ("swing the door closed",)),
    "door-lock-v3": (("lock the door", "turn the door's lock clockwise"),
                     ("twist the lock shut",)),
    "door-open-v3": (("open the door", "pull the door open", "swing the door open"),
                     ("get the door open", "pull on the handle to open the door")),
    "door-unlock-v3": (("unlock the door", "turn the door's lock counter-clockwise"),
                       ("twist the lock open",)),
    "hand-insert-v3": (("put the gripper into the hole", "insert the hand into the hole"),
                       ("push the gripper down the hole",)),
    "drawer-close-v3": (("close the drawer", "push the drawer shut", "slide the drawer closed"),
                        ("shut the drawer", "push the drawer back in")),
    "drawer-open-v3": (("open the drawer", "pull the drawer open", "slide the drawer out"),
                       ("pull out the drawer", "get the drawer open")),
    "faucet-open-v3": (("open the faucet", "turn the faucet counter-clockwise"),
                       ("turn the tap on",)),
    "faucet-close-v3": (("close the faucet", "turn the faucet clockwise"),
                        ("turn the tap off",)),
    "hammer-v3": (("hammer the nail into the wall", "pick up the hammer and drive the nail in"),
                  ("knock the nail in with the hammer",)),
    "handle-press-side-v3": (("press the handle down from the side", "push the side handle down"),
                             ("push the lever down sideways",)),
    "handle-press-v3": (("press the handle down", "push the handle down"),
                        ("push down on the handle",)),
    "handle-pull-side-v3": (("pull the handle up from the side", "lift the side handle up"),
                            ("raise the lever sideways",)),
    "handle-pull-v3": (("pull the handle up", "lift the handle"),
                       ("raise the handle",)),
    "lever-pull-v3": (("pull the lever down", "pull the lever a quarter turn"),
                      ("bring the lever down",)),
    "pick-place-wall-v3": (("pick up the puck and place it at the goal behind the wall", "move the puck over the wall to the goal"),
                           ("lift the puck past the wall onto the target",)),
    "pick-out-of-hole-v3": (("pick the puck out of the hole", "lift the puck up out of the hole"),
                            ("get the puck out of the hole",)),
    "pick-place-v3": (("pick up the puck and place it at the goal", "pick and place the puck on the goal",
                       "lift the puck and put it at the goal"),
                      ("grab the puck and set it down on the target", "carry the puck over to the goal")),
    "plate-slide-v3": (("slide the plate into the cabinet", "push the plate into the cabinet"),
                       ("put the plate in the cabinet",)),
    "plate-slide-side-v3": (("slide the plate into the cabinet from the side", "push the plate sideways into the cabinet"),
                            ("put the plate in the cabinet sideways",)),
    "plate-slide-back-v3": (("slide the plate out of the cabinet", "pull the plate back out of the cabinet"),
                            ("take the plate out of the cabinet",)),
    "plate-slide-back-side-v3": (("slide the plate out of the cabinet sideways", "pull the plate out from the side"),
                                 ("take the plate out sideways",)),
    "peg-insert-side-v3": (("insert the peg into the hole from the side", "pick up the peg and push it into the hole",
                            "put the peg sideways into the hole"),
                           ("plug the peg into the box", "slide the peg into the side hole")),
    "peg-unplug-side-v3": (("unplug the peg from the side", "pull the peg out sideways"),
                           ("take the peg out of the hole",)),
    "soccer-v3": (("kick the ball into the goal", "push the soccer ball into the net"),
                  ("score a goal with the ball",)),
    "stick-push-v3": (("grasp the stick and push the box with it", "use the stick to push the box"),
                      ("shove the box with the stick",)),
    "stick-pull-v3": (("grasp the stick and pull the box with it", "use the stick to pull the box"),
                      ("drag the box with the stick",)),
    "push-v3": (("push the puck to the goal", "slide the puck to the goal", "push the puck onto the target"),
                ("nudge the puck over to the goal", "shove the puck to the target")),
    "push-wall-v3": (("push the puck around the wall to the goal", "get around the wall and push the puck to the goal"),
                     ("slide the puck past the wall to the target",)),
    "push-back-v3": (("push the puck back to the goal", "pull the puck back to the goal"),
                     ("bring the puck back to the target",)),
    "reach-v3": (("reach the goal", "move the gripper to the goal", "reach the target position"),
                 ("bring the hand to the goal", "put the gripper at the target")),
    "reach-wall-v3": (("reach the goal behind the wall", "get around the wall and reach the goal"),
                      ("move the hand past the wall to the target",)),
    "shelf-place-v3": (("pick up the puck and put it on the shelf", "place the puck on the shelf"),
                       ("set the puck on the shelf",)),
    "sweep-into-v3": (("sweep the puck into the hole", "push the puck into the hole"),
                      ("slide the puck into the hole",)),
    "sweep-v3": (("sweep the puck off the table", "push the puck off the edge of the table"),
                 ("knock the puck off the table",)),
    "window-open-v3": (("open the window", "slide the window open", "push the window open"),
                       ("slide the window sideways to open it", "get the window open")),
    "window-close-v3": (("close the window", "slide the window shut", "push the window closed"),
                        ("slide the window sideways to close it", "shut the window")),
}

TASKS: tuple[str, ...] = tuple(INSTRUCTIONS)

# Meta-World's MT10 set, in its own order (metaworld.env_dict.MT10_V3)
MT10: tuple[str, ...] = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
                         "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")

GROUPS: dict[str, tuple[str, ...]] = {
    "easy": ("button-press-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-wall-v3",
             "coffee-button-v3", "dial-turn-v3", "door-close-v3", "door-lock-v3", "door-open-v3", "door-unlock-v3",
             "drawer-close-v3", "drawer-open-v3", "faucet-close-v3", "faucet-open-v3", "handle-press-v3",
             "handle-press-side-v3", "handle-pull-v3", "handle-pull-side-v3", "lever-pull-v3", "plate-slide-v3",
             "plate-slide-back-v3", "plate-slide-back-side-v3", "plate-slide-side-v3", "reach-v3", "reach-wall-v3",
             "window-close-v3", "window-open-v3", "peg-unplug-side-v3"),
    "medium": ("basketball-v3", "bin-picking-v3", "box-close-v3", "coffee-pull-v3", "coffee-push-v3", "hammer-v3",
               "peg-insert-side-v3", "push-wall-v3", "soccer-v3", "sweep-v3", "sweep-into-v3"),
    "hard": ("assembly-v3", "hand-insert-v3", "pick-out-of-hole-v3", "pick-place-v3", "push-v3", "push-back-v3"),
    "very_hard": ("shelf-place-v3", "disassemble-v3", "stick-pull-v3", "stick-push-v3", "pick-place-wall-v3"),
}

# the multi-task sets that ``metaworld/<name>`` stands for
SETS: dict[str, tuple[str, ...]] = {"MT10": MT10, "MT50": TASKS}


def group_of(task: str) -> str:
    """The difficulty group of ``task``."""
    return next(group for group, tasks in GROUPS.items() if task in tasks)


def wordings(task: str, held_out: bool) -> tuple[str, ...]:
    """The training (or held-out) wordings of ``task``'s instruction."""
    train, held = INSTRUCTIONS[task]
    return held if held_out else train


# every wording, training or held out, belongs to one task
_TASK_OF_WORDING = {w: task for task, both in INSTRUCTIONS.items() for ws in both for w in ws}


def task_of_wording(instruction: str) -> str | None:
    """The task whose instruction ``instruction`` is (None: no task's wording)."""
    return _TASK_OF_WORDING.get(instruction)
