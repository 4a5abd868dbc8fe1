"""Network drivers' shared code: the framework that owns every network driver's loop."""
