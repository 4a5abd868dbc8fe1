"""The logic of the operator commands in bin/, one module each (bin/<name> is a thin launcher)."""
