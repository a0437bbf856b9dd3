"""gcsfs classes that leave retrying to squirrel's `RetryPolicy` while one is running, so retries never nest.

gcsfs retries every HTTP request itself: `gcsfs.retry.retry_request` wraps `GCSFileSystem._request` (which
`_cat_file`, `_pipe_file`, `_ls`, `_info`, `_rm_file` all go through) with 6 tries and 1+2+4+8+16 s of
backoff. The count is fixed when gcsfs's class is defined: setting ``retries`` on a filesystem changes
nothing, and a ``retries=`` keyword collides with the decorator's own argument. Under a policy of 8
attempts, a dead endpoint then took 8 x 34 s to fail.

The subclasses here override `_request` only: while `squirrel.aio.retry.with_retries` runs the request
(`policy_retries_active`), the HTTP call is made once, unwrapped, and the policy decides what to retry;
anywhere else (zarr's `FsspecStore`, the csv reader's ranged reads, `FileDriver`, any caller without a
policy) they behave exactly as gcsfs does. gcsfs's classes themselves are untouched, so other users of
gcsfs in the same process keep its retries. The classes are plain module-level subclasses, so a filesystem
pickles (fsspec pickles a filesystem as its class and options) and unpickles as what it was.
"""

from __future__ import annotations

from typing import Any

import gcsfs.core
from gcsfs.retry import HttpError

from squirrel.aio.retry import policy_retries_active

_gcsfs_request = gcsfs.core.GCSFileSystem._request
_request_once = getattr(_gcsfs_request, "__wrapped__", None)
"""gcsfs's `_request` without its retry decorator (None if a gcsfs release stops exposing it)."""


class PolicyRetriedRequests:
    """Mixin for a gcsfs class: one try per HTTP request while a squirrel `RetryPolicy` is retrying it."""

    async def _request(self, *args: Any, **kwargs: Any) -> Any:
        if _request_once is None or not policy_retries_active():
            return await super()._request(*args, **kwargs)  # type: ignore[misc]
        try:
            return await _request_once(self, *args, **kwargs)
        except HttpError as error:  # the one translation gcsfs's retry wrapper makes
            if error.code == 400 and "requester pays" in str(error.message):
                raise ValueError(
                    "Bucket is requester pays. Set `requester_pays=True` when creating the GCSFileSystem."
                ) from error
            raise


class GCSFileSystem(PolicyRetriedRequests, gcsfs.core.GCSFileSystem):
    """gcsfs's plain `GCSFileSystem` (what squirrel uses with an endpoint), retried only by squirrel's policy."""


_CLASSES: dict[type, type] = {gcsfs.core.GCSFileSystem: GCSFileSystem}

try:
    from gcsfs.extended_gcsfs import ExtendedGcsFileSystem as _ExtendedGcsFileSystem
except ImportError:  # an older gcsfs: the plain class is the only one
    pass
else:

    class ExtendedGcsFileSystem(PolicyRetriedRequests, _ExtendedGcsFileSystem):
        """gcsfs's extended class (zonal and HNS buckets), retried only by squirrel's policy over HTTP.

        Its gRPC calls to Google's Storage Control API keep their own retry settings (``retry_timeout`` & co).
        """

    _CLASSES[_ExtendedGcsFileSystem] = ExtendedGcsFileSystem


def policy_retried_class(cls: type) -> type:
    """The subclass of gcsfs class `cls` defined here, or `cls` itself for a class this module does not know."""
    return _CLASSES.get(cls, cls)
