"""Market data sources: the L2 simulator and importers of real formats."""
