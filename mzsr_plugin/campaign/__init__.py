"""The resumable weights campaign: train the shipped MZSR models a few hours at a time, on any machine.

Every run continues the state committed in ``mzsr_plugin/weights/campaign/<model>/`` (network, learned step
sizes, optimizer, scheduler, iteration, RNG), trains for a wall-clock budget, checkpoints atomically every few
minutes, scores the net on a fixed held-out selection set (:mod:`.selection`), replaces the shipped weights only when
the score improves, and appends every evaluation to ``history.jsonl``; :mod:`.report` turns that history into the
model card's numbers and training curve. :mod:`.cli` is the command line (``mzsr-campaign``;
``scripts/train_weights.py`` in a checkout).
"""
from .kinds import CAMPAIGN_KINDS, RECIPES, campaign_dir
from .runner import Campaign, load_history

__all__ = ['CAMPAIGN_KINDS', 'RECIPES', 'Campaign', 'campaign_dir', 'load_history']
