"""What lives in the bucket: every key (``_keys``), every stored record, the listing of a
run's objects, the lease protocol and its timing rules (``_leases``), and the IAM
policies derived from the key layout (``_policies``).

Imports only ``core`` and ``stores``.
"""
