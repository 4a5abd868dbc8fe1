"""Block drivers' shared code: the framework that owns every block driver's loop (libblockdriver)."""
