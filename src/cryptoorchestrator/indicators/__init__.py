"""Technical indicators: thin wrappers over TA-Lib and numpy."""
