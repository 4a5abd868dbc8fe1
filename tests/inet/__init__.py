"""Tests of INET: the TCP/IP stack (in-memory pairs, the real Linux stack), the server's
own logic, and its sockets interface in booted systems."""
