"""Model families for the training loop: ``TASKS[config.task](config, image_shape, axis_name)``.

``RESUMABLE[task]``: the family's own fields that a resume may change, beside the
common ones of `genjax.record.RESUMABLE` (how samples are drawn and the model
evaluated, never what is trained).
"""

from genjax.tasks import classifier, diffusion, flows, gan, pixelcnn, rbm, vae
from genjax.tasks.common import Task

TASKS = {"vae": vae.build, "gan": gan.build, "diffusion": diffusion.build,
         "pixelcnn": pixelcnn.build, "flow": flows.build, "rbm": rbm.build,
         "classifier": classifier.build}

RESUMABLE: dict[str, frozenset[str]] = {
    "vae": frozenset({"iwae_samples"}),
    "gan": frozenset(),
    "diffusion": frozenset({"sampler", "sample_steps", "eta", "variance", "guidance",
                            "clip_denoised", "vlb_timesteps", "bound_images",
                            "bound_variance"}),
    "pixelcnn": frozenset({"guidance"}),
    "flow": frozenset({"temperature", "eval_draws"}),
    "rbm": frozenset({"sample_steps", "ais_temperatures", "ais_runs",
                      "reverse_ais_temperatures"}),
    "classifier": frozenset(),
}

__all__ = ["RESUMABLE", "TASKS", "Task"]
