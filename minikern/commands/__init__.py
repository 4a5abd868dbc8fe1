"""The operator commands in bin/, one module each, on the command base minikern/cli.py
(bin/<name> is a link to bin/_launch, which calls the module's ``main``)."""
