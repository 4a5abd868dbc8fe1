"""Tests of the block driver framework, at_wini and the bdev client (drivers/block, drivers/at_wini, minikern/bdev.py)."""
