"""The blocking API of the user's document: samples, shards, stores and loaders for each driver."""

from squirrel.driver.jsonl import JsonlStore
from squirrel.driver.messagepack import MessagepackStore
from squirrel.driver.record import RecordStore
from squirrel.sample import Sample, Shard

__all__ = ["JsonlStore", "MessagepackStore", "RecordStore", "Sample", "Shard"]
