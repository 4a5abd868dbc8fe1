"""DS, the Data Store: a typed key-value store with label ownership and subscriptions (MINIX servers/ds)."""
from services.ds.main import main

__all__ = ["main"]
