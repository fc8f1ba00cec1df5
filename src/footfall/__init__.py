"""Footfall: self-hosted tracking, identity resolution and analytics for chat widgets."""

__version__ = "0.1.0"
