"""The simulated exchange and fill model shared by backtests and paper trading."""
