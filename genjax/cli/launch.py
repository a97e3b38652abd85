"""What every launcher shares: configs by name or path, the absl main around
train_and_evaluate, ``--print_config``, and one-line errors for a user's mistakes.

``--config`` takes a shipped config's name (``ddpm_mnist``, ``ddpm_mnist:test``: a file
of `genjax.configs`) or the path of any config file (``my/wide_gan.py:test``).
`run` replaces ``absl.app.run``: a bad flag, a config file that is missing or does not
parse, a misspelt ``--config.<field>``, a refused config value, a missing or damaged
file, a diverging run: each ends the process with exit status 1 and one line on
stderr, ``error: <Kind>: <what and what to do>``. ``GENJAX_TRACEBACK=1`` shows the
full traceback instead; errors that are not a user's input (bugs) always show it.
"""

import os
import re
import sys
import traceback
from typing import Callable

# Before TensorFlow or XLA load (both read it): their INFO banners (oneDNN, CPU features)
# off, their warnings and errors kept; TensorFlow's oneDNN ops, which tf.data does not use
# and which announce themselves on AVX-512 CPUs at any log level, off.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
CONFIG_HELP = ("Experiment config: a shipped config's name (ddpm_mnist) or a config file's "
               "path; add :test for the tiny variant.")
WORKDIR_HELP = "Directory for checkpoints, metrics and samples; re-running resumes there."
TRACEBACK_ENV = "GENJAX_TRACEBACK"

# A user's input, not a bug: ValueError (refused values, mismatching checkpoints,
# damaged records), OSError (missing or unwritable files, unusable checkpoints, a full
# disk, a dataset not available), FloatingPointError (a diverging run).
INPUT_ERRORS = (ValueError, OSError, FloatingPointError)


def config_path(name: str) -> str:
    """The path of the shipped config file ``name`` (``ddpm_mnist.py``)."""
    return os.path.join(CONFIG_DIR, name)


def config_names() -> list[str]:
    """The names of the shipped configs (`genjax.configs`), sorted."""
    return sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                  if f.endswith(".py") and not f.startswith("_") and f != "common.py")


def resolve_config(value: str) -> str:
    """``--config``'s value as ml_collections takes it: a shipped config's name (with its
    ``:variant``) becomes that file's path; a path is kept as it is.

    Raises:
      ConfigError: a bare name that is no shipped config (the names are listed).
    """
    name, sep, variant = value.partition(":")
    if os.sep in name or name.endswith(".py") or os.path.exists(name):
        return value
    if name not in config_names():
        raise ConfigError(f"no config named {name!r}; shipped configs: "
                          f"{', '.join(config_names())} (or give a config file's path).")
    return config_path(f"{name}.py") + sep + variant


def _resolved_argv(argv: list[str]) -> list[str]:
    """``argv`` with the value of ``--config=V`` / ``--config V`` through `resolve_config`."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
    return out


def help_text(doc: str) -> None:
    """Make ``doc`` what ``--help`` prints above the flags when the program's ``__main__``
    has no docstring of its own (a console script's generated wrapper)."""
    main_module = sys.modules["__main__"]
    if not main_module.__doc__:
        main_module.__doc__ = doc


def define_run_flags(default: str) -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """The flags of a training launcher: ``--config`` (default: the shipped config
    ``default``), ``--workdir`` and ``--print_config``; returns (config, workdir)."""
    config = config_flags.DEFINE_config_file("config", config_path(f"{default}.py"), CONFIG_HELP,
                                             lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, WORKDIR_HELP)
    flags.DEFINE_bool("print_config", False, "Print the resolved config, each field with its "
                      "type, and exit (no --workdir needed).")
    for name in ("config", "workdir", "print_config"):  # what --help lists for the program
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
    return config, workdir


def describe_config(config, prefix: str = "") -> list[str]:
    """``field: type = value`` for every field of ``config`` (nested ones dotted), in the
    config's order: what ``--config.<field>=`` accepts."""
    import ml_collections

    lines = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            lines += describe_config(value, f"{prefix}{key}.")
            continue
        kind = config.get_type(key)
        kind = "None" if kind is type(None) else getattr(kind, "__name__", str(kind))
        optional = " | None" if value is None and kind != "None" else ""
        lines.append(f"{prefix}{key}: {kind}{optional} = {value!r}")
    return lines


def quiet_logging() -> None:
    """Library logs at WARNING unless ``--verbosity`` was given (orbax logs every save at INFO)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


class ConfigError(ValueError):
    """The config file or a ``--config.<field>`` flag cannot be used."""


def one_line(error: BaseException) -> str:
    """``Kind: message`` on one line (a multi-line message joined, a long one cut; a
    traceback quoted inside the message reduced to its last line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        lines = [lines[0].split("Traceback")[0].split(":")[0] + ":", lines[-1]]
    text = " ".join(lines)
    text = text if len(text) <= 1500 else text[:1500] + " ..."
    return f"{type(error).__name__}: {text}"


def config_error(error: BaseException) -> str:
    """A config flag's failure in one line: the misspelt field and its suggestion, the
    config file that is missing, does not parse or has no get_config(), or the flag error
    itself."""
    text = str(error)
    if isinstance(error, AttributeError) and re.search(
            r"module '\w+_config' has no attribute 'get_config'", text):
        return (f"ConfigError: config file {_config_file(error)} has no get_config(); a config "
                f"file defines get_config(variant: str = '') returning an "
                f"ml_collections.ConfigDict.")
    field = re.search(r"'\\?'?(\w+)\\?'?.*?(Did you mean \"\w+\" instead of \"\w+\"\?)", text, re.S)
    if isinstance(error, (AttributeError, KeyError)) and field:
        return f"ConfigError: config has no field {field.group(1)!r}. {field.group(2)}"
    if isinstance(error, (AttributeError, KeyError)):
        return f"ConfigError: config has no field {text.strip(chr(34) + chr(39))}."
    if isinstance(error, SyntaxError):
        return (f"ConfigError: config file {error.filename} does not parse: {error.msg} "
                f"(line {error.lineno}).")
    missing = re.search(r"Failed loading config file.*?Attempted \[[^\]]*\]:\s*(\S+)", text, re.S)
    if missing:
        return f"ConfigError: config file not found: {missing.group(1)}."
    return one_line(error)


def _config_file(error: BaseException) -> str:
    """The config file that ml_collections was loading when ``error`` was raised (its
    message names only the module ``config_config``), from the loader's frame."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        path = frame.f_locals.get("split_path") if frame.f_code.co_name == "parse" else None
        if isinstance(path, list) and path and isinstance(path[0], str):
            return path[0]
    return "(the --config file)"


def fail(message: str) -> None:
    """End the process: ``error: message`` on stderr, exit status 1."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(1)


def population_flag_error(argv: list[str]) -> str | None:
    """The one line for a ``--config.population.<field>`` that names no population
    setting and no field a population may vary (a structural field: ml_collections would
    only say that the config lacks it); None when every such flag is known."""
    from genjax.hparams import VARIED_FIELDS, population_defaults

    for arg in argv:
        name = re.match(r"--config\.population\.(\w+)", arg)
        if name and name.group(1) not in population_defaults():
            return (f"ConfigError: config.population.{name.group(1)}: the members of a "
                    f"population may differ only in {', '.join(VARIED_FIELDS)} (and seeds); "
                    f"every other field is structural and shared by all members.")
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # config-file and --config.<field> errors surface here
        if os.environ.get(TRACEBACK_ENV):
            raise
        fail(population_flag_error(argv) or config_error(e)
             + " (--helpshort lists the flags)" * isinstance(e, flags.Error))


def load_config(holder: flags.FlagHolder):
    """The parsed config; a config file that failed to load (reported lazily by
    ml_collections) or whose get_config() returned None becomes a one-line `ValueError`."""
    try:
        config = holder.value
    except flags.IllegalFlagValueError as e:  # ml_collections' None (it only logs a warning)
        from ml_collections import config_flags

        path = config_flags.get_config_filename(flags.FLAGS[holder.name])
        raise ConfigError(f"config file {path}: get_config() returned None; it must return an "
                          f"ml_collections.ConfigDict.") from e
    try:
        config.get("task")
    except Exception as e:
        raise ConfigError(config_error(e).removeprefix("ConfigError: ")) from e
    return config


def run(main: Callable[[list], None], argv: list[str] | None = None) -> None:
    """``absl.app.run(main)`` on ``argv`` (default ``sys.argv``), a config name resolved
    (`resolve_config`), with a user's mistake reported in one line (see module doc). A
    child of a sweep or population (`genjax.runlock.child_env`) dies with its parent."""
    from genjax import runlock

    runlock.die_with_parent()
    try:
        argv = _resolved_argv(sys.argv if argv is None else argv)
    except ConfigError as e:
        fail(one_line(e))

    def main_in_one_line(argv: list) -> None:
        try:
            main(argv)
        except app.UsageError as e:  # absl would print its whole usage text (13-55 lines)
            if os.environ.get(TRACEBACK_ENV):
                raise
            fail(f"UsageError: {e}. Every argument must be a --flag=value (quote a value that "
                 f"holds spaces; --helpshort lists the flags).")

    try:
        app.run(main_in_one_line, argv=argv, flags_parser=_parse_flags)
    except INPUT_ERRORS as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        fail(f"{one_line(e)} [{TRACEBACK_ENV}=1 shows the traceback]")


def main_for(config: flags.FlagHolder, workdir: flags.FlagHolder,
             after: Callable[[object], None] | None = None, family: str | None = None
             ) -> Callable[[list], None]:
    """The absl main: quiet library logging, the config (printed and nothing else with
    ``--print_config``; refused when its task is not ``family``'s), joining a multi-host
    run if the environment names one (`genjax.parallel.initialize`),
    train_and_evaluate(config, workdir), then ``after(final_state)`` if given."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        quiet_logging()
        c = load_config(config)
        if flags.FLAGS["print_config"].value:
            print("\n".join(describe_config(c)))
            return
        if family is not None and c.get("task") != family:
            raise ConfigError(f"the config trains task {c.get('task')!r}, not {family!r}: run "
                              f"it with genjax-train {c.get('task')}.")
        if not workdir.value:
            fail("UsageError: --workdir=DIR is required: the run's checkpoints, metrics and "
                 "samples go there (running again resumes there).")
        from genjax import loop, parallel  # after flag parsing: --help stays fast

        parallel.initialize()  # multi-host when GENJAX_NUM_PROCESSES > 1, else nothing

        state = loop.train_and_evaluate(c, workdir.value)
        if after is not None:
            after(state)

    return main
