"""Parallel bulk writer, blocking face: ``write_shards(range(n), url, executor=client, make_sample=fn)``.

`write_shards` runs `squirrel.aio.bulk.write_shards` (same arguments, same docstring) on the process's IO
loop; see there for how shards are written.
"""

from __future__ import annotations

from squirrel.aio import bulk
from squirrel.driver.twin import blocking_function

__all__ = ["write_shards"]

write_shards = blocking_function(bulk.write_shards)
