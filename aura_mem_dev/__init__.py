"""Development package of aura_mem_ros: benchmarks, fault injection, report rendering, the
training recipes that rebuild the shipped weights, and benchmark data.

It lives beside the product (``aura_mem_ros``), imports it, and is never imported by it;
CMake does not install it, so nothing here reaches a robot. ``make setup`` makes it
importable in ``.venv`` (a link to this folder) and writes the ``aura-mem-bench`` command.
"""
