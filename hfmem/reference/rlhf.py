"""The common back-of-envelope PPO memory rule (the widely shared "PPO 显存预估" accounting: weights, gradients
and Adam moments of actor, critic and reference, sharded evenly), mirrored for comparison.

hfmem's estimates never call it — ``hfmem.scenarios.rlhf.estimate_rlhf`` prices each phase of an iteration;
tests use this rule to show what it leaves out. ``hfmem.scenarios.rlhf.seed_static_bytes`` re-exports it.
"""

from __future__ import annotations

import math


def seed_static_bytes(actor_params: int, gpus: int, *, critic_params: int | None = None, weight_bytes: int = 2,
                      gradient_bytes: int = 2, optimizer_bytes: int = 8) -> dict[str, int]:
    """The common back-of-envelope PPO accounting (``PPO 显存预估``): actor, critic and reference weights at
    ``weight_bytes``, actor and critic gradients at ``gradient_bytes`` and Adam moments at
    ``optimizer_bytes`` per parameter, everything sharded over ``gpus``; no activations, no rollout, no
    fp32 master copy. Per GPU."""
    c = actor_params if critic_params is None else critic_params
    per = lambda p, b: math.ceil(p * b / gpus)  # noqa: E731
    parts = {"actor_weights": per(actor_params, weight_bytes), "critic_weights": per(c, weight_bytes),
             "reference_weights": per(actor_params, weight_bytes),
             "actor_optimizer": per(actor_params, optimizer_bytes), "critic_optimizer": per(c, optimizer_bytes),
             "actor_gradients": per(actor_params, gradient_bytes), "critic_gradients": per(c, gradient_bytes)}
    parts["total"] = sum(parts.values())
    return parts


__all__ = ["seed_static_bytes"]
