"""The TCP/IP stack the INET server runs: a pure, event-driven library (no IPC, no blocking).

Public API: ``Stack`` (frames in, frames out, ticks, sockets), ``TcpSocket``,
``UdpSocket``, ``TcpState`` and ``SocketEvent``.  Everything else in this
package is private to it.
"""
from services.inet.stack.events import SocketEvent
from services.inet.stack.stack import Stack
from services.inet.stack.tcp import TcpSocket
from services.inet.stack.tcp_state import TcpState
from services.inet.stack.udp import UdpSocket

__all__ = ["SocketEvent", "Stack", "TcpSocket", "TcpState", "UdpSocket"]
