"""Executing runs: claims (``_claims``), the worker and the run handle (``_worker``), the
command agent (``_agent``) and its child's side (``_child``), and provenance."""
