"""Development code beside the product: benchmarks and training recipes (never installed)."""
