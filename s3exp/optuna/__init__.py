"""An Optuna storage in the bucket: ``s3exp.optuna.storage("s3://bucket/prefix")``.

Optuna's ``JournalStorage`` over create-only numbered log objects, with snapshots and
heartbeats on the server's clock (``_journal``, ``_storage``).  Needs the ``optuna`` extra
(``pip install 's3exp[optuna]'``).  Imports stores, bucket and core.
"""

from s3exp.optuna._storage import BucketStorage, storage

__all__ = ["BucketStorage", "storage"]
