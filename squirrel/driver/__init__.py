"""The blocking API of the user's document: samples, shards, and a store and a loader for each driver."""

from squirrel.driver.csv import CsvLoader, CsvStore
from squirrel.driver.file_driver import FileDriver
from squirrel.driver.jsonl import JsonlLoader, JsonlStore
from squirrel.driver.loader import RecordLoader
from squirrel.driver.messagepack import MessagePackDataLoader, MessagepackLoader, MessagepackStore
from squirrel.driver.record import RecordStore
from squirrel.driver.zarr import ZarrLoader, ZarrStore
from squirrel.sample import Sample, Shard

__all__ = [
    "CsvLoader",
    "CsvStore",
    "FileDriver",
    "JsonlLoader",
    "JsonlStore",
    "MessagePackDataLoader",
    "MessagepackLoader",
    "MessagepackStore",
    "RecordLoader",
    "RecordStore",
    "Sample",
    "Shard",
    "ZarrLoader",
    "ZarrStore",
]
