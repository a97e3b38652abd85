"""Evaluate a trained run: sample-quality metrics from its latest checkpoint.

  python -m experiments.evaluate --workdir=runs/gan_mlp
  python -m experiments.evaluate --workdir=runs/gan_mlp --num_samples=1000 --save_samples=s.npy
  python -m experiments.evaluate --workdir=runs/ddpm --sampler=dpm++2m --sample_steps=20

Reads the run's config (``config.json`` with the changes of ``resumes.jsonl``), restores
the newest usable checkpoint read-only (safe next to a live trainer: nothing in its
checkpoint folder is created, moved or deleted, and a step that vanishes or is damaged
is skipped for the next older one), draws
``--num_samples`` samples (EMA weights when the run keeps them) with a fixed key,
and scores them against as many test images with the mnist5k domain classifier
(FID, IS, KID, precision/recall, mode coverage), or with the FID InceptionV3
(``--extractor=inception --inception_weights=inception_fid.npz``); for a conditional run
on MNIST-like data also the class accuracy of the same samples (how often the domain
classifier names the class each was asked for). The metrics are appended to
``<workdir>/evaluations.jsonl`` at the checkpoint's step (apart from the run's own
``metrics.jsonl``, whose final row stays its last: docs/reliability.md's final-row rule),
shown in TensorBoard beside the run's, and printed as a table.
Diffusion runs sample with their config's sampler unless ``--sampler``,
``--sample_steps``, ``--eta``, ``--variance`` or ``--guidance`` say otherwise, an
autoregressive run trained with label dropout takes ``--guidance`` too, and a flow run
``--temperature``; their metric keys name how the samples were drawn
(``test/domain_ddim50_eta0_fid``, ``test/domain_w2_fid``, ``test/domain_T1_fid``),
and any run's keys carry
``n<count>_`` when ``--num_samples`` differs from the config's ``eval_samples``. ``--save_samples`` writes the samples as float32 NHWC in [0, 1] (``.npy``) for any
outside tool; ``--real_baseline`` scores real training images instead (printed only),
the floor these numbers have with this protocol.
"""

import os

from absl import app, flags, logging

from experiments import launch

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.", required=True)
_NUM = flags.DEFINE_integer("num_samples", None, "Samples to draw (and test images to use); "
                            "default: the run's config.eval_samples.")
_SAVE = flags.DEFINE_string("save_samples", None, "Also write the samples to this .npy file.")
_EXTRACTOR = flags.DEFINE_enum("extractor", "domain", ["domain", "inception"],
                                "domain: the shipped mnist5k classifier (offline, 28x28x1 data); "
                                "inception: the FID InceptionV3 (needs --inception_weights).")
_WEIGHTS = flags.DEFINE_string("inception_weights", None, "The converted Inception .npz "
                               "(see experiments/convert_inception.py).")
_SAMPLER = flags.DEFINE_enum("sampler", None, ["ddpm", "ddim", "dpm++2m"],
                              "Diffusion runs: the sampler (default: the run's config.sampler).")
_STEPS = flags.DEFINE_integer("sample_steps", None, "Diffusion runs: sampling steps.")
_ETA = flags.DEFINE_float("eta", None, "Diffusion runs: DDIM's η in [0, 1].")
_VARIANCE = flags.DEFINE_enum("variance", None, ["large", "small"], "Diffusion runs: the "
                               "ancestral sampler's σ² (large: β, small: the posterior's β̃).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Conditional diffusion runs, and "
                               "autoregressive ones trained with label dropout: the "
                               "classifier-free guidance scale w.")
_TEMPERATURE = flags.DEFINE_float("temperature", None, "Flow runs: the latent's scale T "
                                  "(z ~ N(0, T^2 I); default the run's config.temperature).")
_FLOOR = flags.DEFINE_bool("real_baseline", False, "Score real training images instead of "
                           "samples: what a perfect generator would reach with this protocol.")


# A flow's latent scale beyond a few standard deviations draws from far outside where the
# density was trained: the samples are saturated noise, their scores meaningless.
MAX_TEMPERATURE = 10.0

# What each family's evaluation may change about its sampler.
SAMPLING = {"diffusion": ("sampler", "sample_steps", "eta", "variance", "guidance"),
            "pixelcnn": ("guidance",),
            "flow": ("temperature",)}


def evaluate_run(workdir: str, num_samples: int | None = None, save_samples: str | None = None,
                 real_baseline: bool = False, extractor: str = "domain",
                 inception_weights: str | None = None,
                 sampling: dict | None = None) -> dict[str, float]:
    """Metrics of the newest checkpoint in ``workdir`` (see the module docstring) from
    ``num_samples`` samples (default: the run's ``eval_samples``); ``sampling`` overrides
    the sampler fields of a diffusion run's config (`SAMPLING`)."""
    from genjax import data as gdata
    from genjax import loop, record, rng
    from genjax.checkpoint import Checkpointer
    from genjax.report import MetricWriter
    from genjax.tasks.common import collect_images, domain_extractor_for, sample_class_accuracy

    trained = record.run_config(workdir)
    config = _with_sampling(trained, sampling or {})
    num_samples = config.eval_samples if num_samples is None else num_samples
    if num_samples < 2:
        raise ValueError(f"--num_samples must be at least 2, got {num_samples}.")
    if save_samples:
        _check_writable(save_samples)
    scorer = None  # the domain classifier
    if extractor == "inception":  # load (or fail clearly) before any sampling
        from genjax.metrics import inception
        scorer = inception.make_extractor(inception_weights)
    elif extractor != "domain":
        raise ValueError(f"Unknown extractor {extractor!r}; valid: domain, inception.")
    run = loop.setup(config)
    eval_spec, image_shape = run.eval_spec, run.image_shape
    if run.task.sample is None:
        raise ValueError(f"Task {config.task!r} (deterministic={config.get('deterministic')}) "
                         "does not generate samples; nothing to evaluate.")
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    state = ckpt.restore(run.init_state())
    if state is None:
        raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints.")
    fake = run.task.sample(state, rng.stream(config.seed, "eval_samples"), num_samples)
    if real_baseline:
        fake = [collect_images(gdata.eval_iterator(
            eval_spec, "train", global_batch_size=config.eval_batch_size), num_samples,
            eval_spec.preprocess)]
    if save_samples:
        fake = _saved(fake, save_samples, num_samples, image_shape)
    if num_samples > gdata.num_examples(eval_spec, "test"):
        logging.warning("The test split is smaller than --num_samples=%d; the metrics use as many "
                        "samples as it has images.", num_samples)
    scored = []  # the samples scoring uses, kept for a conditional run's class check
    tag = metric_tag(config, num_samples, trained)
    results = loop.score_samples(fake, num_samples, config, eval_spec, scorer,
                                 prefix=f"test/{extractor}_{tag}", scored=scored)
    classifier = domain_extractor_for(config, image_shape)
    if config.get("num_classes") and classifier is not None and not real_baseline:
        results.update(sample_class_accuracy(scored, config, classifier, f"test/domain_{tag}"))
    if save_samples:
        for _ in fake:  # write the samples that scoring did not need
            pass
    if not real_baseline:  # the baseline is not this run's result
        writer = MetricWriter(workdir, record.EVALUATIONS)
        writer.scalars(int(state.step), results)
        writer.close()
    return results


def _with_sampling(config, sampling: dict):
    """``config`` with the given sampler fields replaced (`SAMPLING` says which a family
    takes); a ``temperature`` outside (0, `MAX_TEMPERATURE`] is refused."""
    sampling = {k: v for k, v in sampling.items() if v is not None}
    every = sorted({f for fields in SAMPLING.values() for f in fields})
    unknown = set(sampling) - set(every)
    if unknown:
        raise ValueError(f"Unknown sampling fields {sorted(unknown)}; valid: {', '.join(every)}.")
    wrong = [f for f in sampling if f not in SAMPLING.get(config.task, ())]
    if wrong:
        takers = [t for t in SAMPLING if wrong[0] in SAMPLING[t]]
        verb = "applies" if len(wrong) == 1 else "apply"
        raise ValueError(f"--{', --'.join(wrong)} {verb} to {' and '.join(takers)} runs; this run "
                         f"is task {config.task!r}.")
    temperature = sampling.get("temperature", 1.0)
    if not 0 < temperature <= MAX_TEMPERATURE:  # NaN fails this too
        raise ValueError(f"--temperature must be in (0, {MAX_TEMPERATURE:g}] (the latent's scale "
                         f"T, z ~ N(0, T^2 I); 1 is the trained density), got {temperature!r}.")
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.update(sampling)
    return config


def metric_tag(config, num_samples: int, trained=None) -> str:
    """What ``evaluate_run`` puts between ``test/<extractor>_`` and a metric's name: how a
    diffusion run's samples were drawn, a flow's temperature (``T0.5_``) when it differs
    from the run's own (``trained``: the config it trained with), and ``n<count>_`` when
    ``num_samples`` differs from the config's ``eval_samples`` (so that a smaller check
    never shares a key with the run's own figures)."""
    count = f"n{num_samples}_" if num_samples != config.eval_samples else ""
    return _sampling_tag(config, trained) + count


def _sampling_tag(config, trained=None) -> str:
    """How a diffusion run's samples were drawn, for its metric keys (``ddim50_eta0_``,
    ``ddpm50_large_``, ``dpm++2m20_w1.5_``), an autoregressive run's guidance (``w2_``,
    when trained with label dropout), a flow's temperature when it differs from the
    ``trained`` config's (``T1_``); empty for other families."""
    if config.task == "flow":
        same = trained is None or config.temperature == trained.temperature
        return "" if same else f"T{config.temperature:g}_"
    if config.task == "pixelcnn":
        return f"w{config.guidance:g}_" if config.get("label_dropout") else ""
    if config.task != "diffusion":
        return ""
    tag = f"{config.sampler}{config.sample_steps}_"
    tag += f"eta{config.eta:g}_" if config.sampler == "ddim" else ""
    tag += f"{config.variance}_" if config.sampler == "ddpm" else ""
    return tag + (f"w{config.guidance:g}_" if config.num_classes else "")


def _check_writable(path: str) -> None:
    """Fail before any sampling when ``path`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(path):
        raise PermissionError(f"--save_samples={path}: cannot write there (no such folder, "
                              f"not writable, or a folder).")


def _saved(batches, path: str, num: int, image_shape):
    """Pass ``batches`` through, writing them into a float32 .npy of ``num`` images on the way."""
    import numpy as np

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(num, *image_shape))
    i = 0
    for b in batches:
        out[i:i + len(b)] = b
        i += len(b)
        yield b
    out.flush()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    launch.quiet_logging()
    sampling = {"sampler": _SAMPLER.value, "sample_steps": _STEPS.value, "eta": _ETA.value,
                "variance": _VARIANCE.value, "guidance": _GUIDANCE.value,
                "temperature": _TEMPERATURE.value}
    results = evaluate_run(_WORKDIR.value, _NUM.value, _SAVE.value, _FLOOR.value,
                           _EXTRACTOR.value, _WEIGHTS.value, sampling)
    width = max(map(len, results))
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in results.items()))


if __name__ == "__main__":
    launch.run(main)
