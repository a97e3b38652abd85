"""A population worker (the ``workers`` strategy, `genjax.workers`): trains the named
members of the population recorded in WORKDIR one after another, each as the run of its
own config in ``WORKDIR/members/m<i>``, every line it prints prefixed ``[m<i>]``.

  python -m genjax.cli.member WORKDIR I [I ...]

Its coordinator starts it (pinned to one core, single-threaded) and holds the
population's lock; it is not a launcher of its own.
"""

from __future__ import annotations

import os
import sys

from genjax.cli import launch


def train_member(workdir: str, config, member) -> None:
    """Member ``member`` trained (or resumed) in its own directory; a member that
    diverges is recorded as frozen (`genjax.workers.record_divergence`) and one that
    already did is passed over."""
    from genjax import loop, population, workers
    from genjax.report import info, warn

    directory = workers.member_dir(workdir, member.index)
    frozen = workers.divergence(directory)
    if frozen is not None:
        info(f"member {member.label} diverged at step {frozen['step']} earlier: frozen.")
        return
    os.makedirs(directory, exist_ok=True)
    info(f"member {member.label}: training in {directory}")
    try:
        loop.train_and_evaluate(population.member_config(config, member), directory)
    except loop.NonFiniteError as e:
        workers.record_divergence(directory, e.step, str(e))
        warn(f"member {member.label} diverged (step {e.step}): frozen with its last good "
             f"checkpoint; the others train on. {launch.one_line(e)}")


def main(argv: list[str]) -> None:
    """Train members ``argv[2:]`` of the population in ``argv[1]``."""
    from genjax import population, workers

    workers.settle()  # pinned to its core, dies with its coordinator
    launch.quiet_logging()
    workdir, indices = argv[1], [int(i) for i in argv[2:]]
    config = workers.worker_config(workdir)
    roster = population.roster(config)
    for i in indices:
        with workers.prefixed(f"[m{i}] "):
            try:
                train_member(workdir, config, roster[i])
            except launch.INPUT_ERRORS as e:
                if os.environ.get(launch.TRACEBACK_ENV):
                    raise
                launch.fail(launch.one_line(e))


if __name__ == "__main__":
    main(sys.argv)
