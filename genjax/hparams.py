"""The hyperparameters a population may vary, and its settings' defaults.

No JAX here: the configs (`genjax.configs.common.add_population` declares
``config.population`` from `population_defaults`) and the run's record (an older run
reads as having no population) import it. `genjax.population` trains populations.
"""

# Fields the members of a population may differ in (`genjax.population`): numbers the
# step reads, never shapes or programs (widths, layers, batch size, n_critic, image
# size, sampler are structural: one population shares them).
VARIED_FIELDS = ("learning_rate", "g_learning_rate", "d_learning_rate", "b1", "b2", "beta",
                 "gp_weight", "r1_weight", "clip_value", "label_smoothing", "ema_decay",
                 "label_dropout", "guidance", "weight_decay", "clip_norm", "temperature", "eta")
POPULATION_RULES = ("product", "zip")  # every combination, or the i-th values together
POPULATION_STRATEGIES = ("auto", "vmap", "map", "workers")  # auto: workers on CPU, else vmap


POPULATION_SETTINGS = ("seeds", "rule", "strategy", "rank_by")  # the entries that are no field


def is_population(config) -> bool:
    """Whether ``config`` (an ml_collections.ConfigDict) names a population: more than one
    seed, or a field given values to vary."""
    p = config.get("population")
    return bool(p) and (p.get("seeds", 1) != 1 or any(
        v is not None for k, v in p.items() if k not in POPULATION_SETTINGS))


def population_defaults() -> dict:
    """``config.population`` of a run that is not a population
    (`genjax.configs.common.add_population` declares it so)."""
    return {"seeds": 1, "rule": "product", "strategy": "auto", "rank_by": "auto",
            **{field: None for field in VARIED_FIELDS}}
