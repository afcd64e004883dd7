"""Shipped test helpers: fakes for every port, API-test helpers, the ownership check."""
