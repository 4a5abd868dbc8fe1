"""Tests of the INET TCP/IP stack (services/inet/stack): in-memory pairs and the real Linux stack."""
