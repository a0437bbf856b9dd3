"""Stores over async fsspec filesystems: an I/O-free layout, and a store class per kind of object."""

__all__: list[str] = []  # the store classes are imported from their modules (and from `squirrel.aio`)
