"""Disc import: read a disc, ISO image or folder tolerantly, reconcile identity, forward."""
