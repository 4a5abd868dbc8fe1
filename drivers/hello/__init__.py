"""The hello driver: MINIX's drivers/examples/hello, a minimal character driver."""
from drivers.hello.hello import main

__all__ = ["main"]
