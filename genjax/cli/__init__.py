"""The command lines: ``genjax-train <family>`` (`genjax.cli.train`), ``genjax-evaluate``
(`genjax.cli.evaluate`), the domain classifier's export (`genjax.cli.classifier`) and the
Inception weights' conversion (`genjax.cli.convert_inception`); `genjax.cli.launch` is
what they share. The top layer of genjax: nothing below imports it."""
