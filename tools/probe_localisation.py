"""What can the MoT trunk learn to read off one frame in a CPU budget? A localisation probe.

The AR policy and the progress head must find the object the instruction names; the state read-out only
the effector. This tool asks the trunk directly: it renders fresh scenes of an env (unseen seeds), puts
``[BOS] instruction [BOF] f_0 [EOF] [state dropped] [PRG]`` through the model, and trains the whole model
plus a linear head on the ``[PRG]`` hidden state to regress, normalised:

- ``effector``: the effector's xy (agent_pos[:2]), what the state read-out learns;
- ``objects``: the mean xy of the scene's objects (environment_state as (n, 2)): no colour, no language;
- ``named``: the named object's xy (environment_state[:2]): colour grounding through the instruction.

It prints the held-out R^2 of each every ``--every`` steps. ``--checkpoint RUN`` starts from a trained
model (default: a fresh one with that run's config).

    python tools/probe_localisation.py --checkpoint RUN [--env worldmot/Reach-v0] [--steps 600] [--trained]
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
import worldmot.envs  # noqa: F401  (registers the ids)
from tqdm import tqdm
from worldmot.checkpoint import load_model
from worldmot.model.imagination import _ids
from worldmot.model.world_model import SegmentInputs, WorldModel

TARGETS = ("effector x", "effector y", "objects x", "objects y", "named x", "named y")


def scenes(env_id: str, n: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """n fresh scenes: frames (n, H, W, 3) uint8, instructions, targets (n, 6) in the order of TARGETS."""
    env = gym.make(env_id)
    frames, tasks, targets = [], [], []
    for i in tqdm(range(n), desc="scenes", leave=False):
        obs, info = env.reset(seed=seed + i)
        objects = np.asarray(obs["environment_state"], np.float64).reshape(-1, 2)
        frames.append(obs["pixels"][next(iter(obs["pixels"]))])
        tasks.append(info["instruction"])
        targets.append(np.concatenate([obs["agent_pos"][:2], objects.mean(0), objects[0]]))
    env.close()
    return np.stack(frames), tasks, np.stack(targets).astype(np.float32)


def prg_hidden(model: WorldModel, tasks: list[str], frame_tokens: torch.Tensor) -> torch.Tensor:
    """(B, D) hidden state at [PRG] of one fresh frame with its instruction, the state token dropped."""
    seq, layout = model.cfg.sequence, model.layout(1)
    end, B = int(layout.progress[0]), len(tasks)
    ids = _ids(layout, 0, end, B, model.device)
    instr = np.stack([model.text_tokenizer.encode_padded(t, seq.instruction_len) for t in tasks])
    ids[:, torch.as_tensor(layout.instruction)] = torch.as_tensor(instr)
    states = torch.zeros(B, 1, seq.state_dim)
    inp = SegmentInputs(ids, frame_tokens[:, None], states, torch.ones(B, 1, dtype=torch.bool))
    h, _ = model.run(layout.segment(0, end), inp)
    return h[:, -1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a run folder: its config (and weights with --trained)")
    p.add_argument("--trained", action="store_true", help="start from the run's weights, not a fresh model")
    p.add_argument("--env", default="worldmot/Reach-v0")
    p.add_argument("--scenes", type=int, default=3200, help="of which 400 are held out")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--seed", type=int, default=300_000)
    args = p.parse_args()
    torch.manual_seed(0)
    trained = load_model(f"{args.checkpoint}/model")
    model = trained if args.trained else WorldModel(trained.cfg, trained.action_tokenizer)
    model.train()
    frames, tasks, y = scenes(args.env, args.scenes, args.seed)
    tokens, y = model.tokenize_frames(frames), torch.as_tensor(y)
    n_train = args.scenes - 400
    y = (y - y[:n_train].mean(0)) / y[:n_train].std(0).clamp(min=1e-6)
    head = torch.nn.Linear(model.cfg.width, y.shape[1])
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=args.lr)
    held_out = torch.arange(n_train, args.scenes)
    print(f"{args.env}, {'trained' if args.trained else 'fresh'} {model.cfg.name} model; held-out R^2 of "
          + ", ".join(TARGETS))
    start = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n_train, (args.batch_size,))
        loss = ((head(prg_hidden(model, [tasks[i] for i in idx], tokens[idx])) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            with torch.no_grad():
                pred = head(prg_hidden(model, [tasks[i] for i in held_out], tokens[held_out]))
            r2 = 1 - ((pred - y[held_out]) ** 2).mean(0) / y[held_out].var(0)
            print(f"step {step:5d} {time.time() - start:6.0f} s  R^2 " + " ".join(f"{v:+.2f}" for v in r2.tolist()),
                  flush=True)


if __name__ == "__main__":
    main()
