"""Train-step factories: build once from explicit dependencies, return pure functions."""

from genjax.steps.common import LossFn, Metrics, StepFn, make_train_step

__all__ = ["LossFn", "Metrics", "StepFn", "make_train_step"]
