"""Model families for the training loop: ``TASKS[config.task](config, image_shape)``."""

from genjax.tasks import vae
from genjax.tasks.common import Task

TASKS = {"vae": vae.build}

__all__ = ["TASKS", "Task"]
