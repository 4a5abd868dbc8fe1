"""Whole systems on a network: a Linux peer through TAP in a namespace, or two systems on the UDP wire."""
