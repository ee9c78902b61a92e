"""Ports of the published ArchIt's own tests (``tst/`` of bauwenst/ArchIt), with the local stand-ins for its hub
checkpoints in ``published_helpers.py``."""
