"""Train-step factories: build once from explicit dependencies, return pure functions."""

from genjax.steps.common import (SKIPPED, LossFn, Metrics, StepFn, all_finite, make_train_step,
                                 multi_step, skip_nonfinite, with_ema)

__all__ = ["SKIPPED", "LossFn", "Metrics", "StepFn", "all_finite", "make_train_step",
           "multi_step", "skip_nonfinite", "with_ema"]
