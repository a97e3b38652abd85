"""The launchers under their repository names: ``python -m experiments.<family>`` is
``genjax-train <family>`` (`genjax.cli`), for use from a checkout of the repository."""
