"""What lives in the bucket: every key (``keys``), every stored record, the listing of a
run's objects, the lease protocol and its timing rules (``_leases``), and the IAM
policies derived from the key layout (``_policies``).

Imports only ``core`` and ``stores``.
"""

import typing as _typing

from s3exp.bucket import keys
from s3exp.core import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from s3exp.bucket._leases import (
        STALE_MARGIN,
        heartbeat_interval,
        is_stale,
        seal,
    )
    from s3exp.bucket._listing import (
        RunListing,
        RunObjects,
        list_runs,
        parse_listing,
    )
    from s3exp.bucket._policies import (
        ROLES,
        Role,
        bucket_policy,
        policy,
    )
    from s3exp.bucket._records import (
        AttemptRecord,
        ControlRecord,
        ControlState,
        CostRecord,
        ExperimentStatus,
        JournalEntry,
        Lease,
        Manifest,
        PairStatus,
        ResultRecord,
        SpecRecord,
        TrialHeartbeat,
        WorkerIdentity,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "AttemptRecord": "._records",
    "ControlRecord": "._records",
    "ControlState": "._records",
    "CostRecord": "._records",
    "ExperimentStatus": "._records",
    "JournalEntry": "._records",
    "Lease": "._records",
    "Manifest": "._records",
    "PairStatus": "._records",
    "ROLES": "._policies",
    "ResultRecord": "._records",
    "Role": "._policies",
    "RunListing": "._listing",
    "RunObjects": "._listing",
    "STALE_MARGIN": "._leases",
    "SpecRecord": "._records",
    "TrialHeartbeat": "._records",
    "WorkerIdentity": "._records",
    "bucket_policy": "._policies",
    "heartbeat_interval": "._leases",
    "is_stale": "._leases",
    "list_runs": "._listing",
    "parse_listing": "._listing",
    "policy": "._policies",
    "seal": "._leases",
}, globals())

__all__ = [
    "AttemptRecord",
    "ControlRecord",
    "ControlState",
    "CostRecord",
    "ExperimentStatus",
    "JournalEntry",
    "Lease",
    "Manifest",
    "PairStatus",
    "ROLES",
    "ResultRecord",
    "Role",
    "RunListing",
    "RunObjects",
    "STALE_MARGIN",
    "SpecRecord",
    "TrialHeartbeat",
    "WorkerIdentity",
    "bucket_policy",
    "heartbeat_interval",
    "is_stale",
    "keys",
    "list_runs",
    "parse_listing",
    "policy",
    "seal",
]
