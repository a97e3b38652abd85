"""Config fields every experiment shares: data, schedule, logging, checkpoints."""

import ml_collections

from genjax.hparams import population_defaults


def add_population(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Declare ``c.population`` (ml_collections refuses undeclared fields): ``seeds``
    (seeds per setting), ``rule``, ``strategy``, ``rank_by`` (the final metric that names
    the best member; auto: the domain FID, else the first metric with a direction) and a
    tuple-valued field per varied field,
    e.g. ``--config.population.learning_rate=1e-3,3e-4 --config.population.seeds=3``."""
    p = ml_collections.ConfigDict()
    for field, value in population_defaults().items():
        p[field] = value if value is not None else ml_collections.FieldReference(
            None, field_type=tuple)
    c.population = p
    return c


def add_data_and_loop(c: ml_collections.ConfigDict, *, preprocess: str, batch_size: int,
                      num_steps: int, every: int) -> ml_collections.ConfigDict:
    """Fill the shared fields of ``c``; ``every`` is the sample/checkpoint cadence."""
    c.fast_layers = True  # exact sub-pixel transposed convs; False: Flax's stock layer
    c.dataset = "mnist5k"  # or mnist, fashion_mnist, cifar10, celeb_a (need a download),
    #                        or your own: folder:<path> or npz:<path> (docs/usage.md)
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.download = True
    c.crop = ml_collections.FieldReference(None, field_type=int)
    c.image_size = ml_collections.FieldReference(None, field_type=int)
    c.image_channels = ml_collections.FieldReference(None, field_type=int)  # 1 or 3: convert
    c.upscale = False      # own data: enlarge images smaller than image_size (else refused)
    c.bad_images = "stop"  # own data: an unreadable image stops the preparation, or "skip"
    c.preprocess = preprocess
    c.eval_preprocess = ml_collections.FieldReference(None, field_type=str)  # None: same
    c.data_source = "auto"  # memory (split held on the device), tfds (tf.data threads) or auto
    c.batch_size = batch_size
    c.num_steps = num_steps
    c.train_minutes = 0.0  # > 0: stop (with a checkpoint) after this many minutes of training
    #                        (compile included, evaluations excluded); running again continues
    c.seed = 0
    c.eval_batch_size = 250
    c.eval_samples = 1000  # real test images and samples for the domain metrics (FID/IS/...)
    c.eval_every = 0       # also evaluate every this many steps (0: only at the end)
    c.log_every = max(1, every // 10)
    c.sample_every = every
    c.checkpoint_every = every
    c.keep_checkpoints = 3
    c.keep_best = ml_collections.FieldReference(None, field_type=str)  # a metric (e.g.
    #                      "domain_fid"): also keep the checkpoint evaluated best by it
    c.parallel = "none"    # data-parallel driver: none (one device), pmap or mesh
    c.steps_per_call = 1   # train steps per compiled call (lax.scan); see docs/benchmarks.md
    c.compute_dtype = "float32"  # or bfloat16: networks' arithmetic (params stay float32)
    c.cpu_dots = "auto"    # XLA:CPU dot library: auto (eigen with convs), ynnpack, eigen, eigen+ynn
    c.skip_nonfinite_steps = False  # True: drop NaN/Inf updates (counted) instead of stopping
    c.max_skipped_fraction = 0.5    # ... but stop when more than this share of a log window is
    c.start_over = False   # True: train from step 0 when the workdir's checkpoints are all damaged
    c.wandb_project = ml_collections.FieldReference(None, field_type=str)  # also log to W&B
    c.wandb_entity = ml_collections.FieldReference(None, field_type=str)   # W&B team or user
    c.wandb_mode = ml_collections.FieldReference(None, field_type=str)  # online, offline, ...
    return add_population(c)  # K seeds or values in one run (docs/usage.md "Populations")


def shrink_for_tests(c: ml_collections.ConfigDict, *, steps: int) -> ml_collections.ConfigDict:
    """The ``:test`` variant's schedule: a few tiny steps, every output exercised."""
    c.batch_size = min(c.batch_size, 32)
    c.num_steps = steps
    c.eval_batch_size = 200
    c.eval_samples = 200
    c.log_every = steps // 4
    c.sample_every = steps // 2
    c.checkpoint_every = steps // 2
    return c


def set_budget(c: ml_collections.ConfigDict, variant: str, *, num_steps: int, every: int
               ) -> ml_collections.ConfigDict:
    """A config's own training budget and output cadence (the ``:test`` variant keeps its tiny one)."""
    if not variant:
        c.num_steps = num_steps
        c.sample_every = c.checkpoint_every = every
        c.log_every = max(1, every // 10)
    return c


def use_cifar10(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """CIFAR-10 with the long schedule of the CIFAR configs (the ``:test`` one stays tiny)."""
    c.dataset = "cifar10"
    if not variant:
        c.batch_size = 128
    return set_budget(c, variant, num_steps=50000, every=5000)
