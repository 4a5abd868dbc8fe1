"""Every wire format of the system, one module per channel (docs/PROTOCOL.md).

- ``codec``: kernel IPC (request/reply headers, HELLO, BYE, message bodies),
  the shared ``[name, version, verb, *fields]`` framing, and the only calls to
  msgpack and json;
- ``bus``: the kernel-board bus;
- ``fastpath``: a driver's attach to the board;
- ``ring``: the layout and slots of a driver's port I/O ring in shared memory;
- ``control``: the board's control socket;
- ``startup``: the record the kernel hands a template process;
- ``image``: ``run_dir/boot.image``, written by bin/boot and read by the kernel.
- ``priv``: the privilege map, a field of a boot image entry, PRIVCTL and HELLO.

No module outside this package imports msgpack or builds a frame by hand
(tests/test_protocol_layer.py checks it).  Import ``Message`` from here.
"""
from minikern.proto.codec import Message

__all__ = ["Message"]
