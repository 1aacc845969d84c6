"""Experiment specs: the models and their validation (``_models``), the distributions
(``_distributions``), the deterministic expansion into run slots (``_expansion``), and
submitting, loading and listing stored experiments (``_experiments``)."""
