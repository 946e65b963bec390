"""Fitting the AURA layer to a robot from recorded bags (aura-mem-train)."""
