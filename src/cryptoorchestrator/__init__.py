"""CryptoOrchestrator: a self-hosted crypto trading platform."""

__version__ = "0.1.0"
