"""Model families for the training loop: ``TASKS[config.task](config, image_shape)``."""

from genjax.tasks import gan, vae
from genjax.tasks.common import Task

TASKS = {"vae": vae.build, "gan": gan.build}

__all__ = ["TASKS", "Task"]
