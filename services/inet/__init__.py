"""INET: the TCP/IP server.  ``stack/`` is the protocol engine; main.py the server around it."""
