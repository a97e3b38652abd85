"""Model families for the training loop: ``TASKS[config.task](config, image_shape, axis_name)``."""

from genjax.tasks import classifier, diffusion, flows, gan, pixelcnn, rbm, vae
from genjax.tasks.common import Task

TASKS = {"vae": vae.build, "gan": gan.build, "diffusion": diffusion.build,
         "pixelcnn": pixelcnn.build, "flow": flows.build, "rbm": rbm.build,
         "classifier": classifier.build}

__all__ = ["TASKS", "Task"]
