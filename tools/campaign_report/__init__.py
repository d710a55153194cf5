"""The repository's own report tooling: the model card's, README's and docs/' generated blocks, from the weights
campaign's committed history and benchmark outputs. Not installed (a wheel holds what users run); run it from a
checkout with ``python scripts/train_weights.py report --model <kind> [--measure]``.

- :mod:`.report`: the campaign sections, curves and x2 direct's measured blocks, and :data:`~.report.PAGES`, the page
  of each generated block outside the model card.
- :mod:`.zoo_tables`: the other models' measured tables and README's model-zoo table.
- :mod:`.measure`: the ``report`` subcommand; ``--measure`` reruns the benchmarks behind the numbers first.
"""
