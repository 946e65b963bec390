"""The MuJoCo arm memory task's development side: demos, BC, AURA training, the benchmark.

``make train-arm`` (``python -m aura_mem_dev.arm.train``) rebuilds the shipped weights in
``aura_mem_ros/models/arm_mini``; ``make bench-arm`` (``python -m aura_mem_dev.arm.bench``)
writes ``docs/results/arm.md`` and ``arm.json``.
"""
