"""Benchmarks behind one command, ``aura-mem-bench SUBCOMMAND``."""
