"""Operations on experiments: status (``_status``), request costs (``_costs``), and the
operator's actions (``_operations``: pause, resume, cancel, reset, results)."""
