"""Stores over async fsspec filesystems: an I/O-free layout, and a store class per kind of object."""
