"""Learning-rate schedule: linear warm-up, then steps (detectron2's WarmupMultiStepLR)."""

from __future__ import annotations


def learning_rate(iteration: int, schedule: dict) -> float:
    rate = schedule["base_lr"]
    warmup = schedule["warmup_iterations"]
    if iteration < warmup:
        alpha = iteration / warmup
        rate *= schedule["warmup_factor"] * (1 - alpha) + alpha
    for step in schedule["lr_steps"]:
        if iteration >= round(step * schedule["iterations"]):
            rate *= schedule["lr_gamma"]
    return rate
