"""``python -m services.mfs``: the server's main (normally started by RS from system.conf)."""
from minikern import sef
from services.mfs.main import main

sef.run_component(main)
