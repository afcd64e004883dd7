"""Strategies: the interface, parameters, registry, built-in library and declarative rules."""
