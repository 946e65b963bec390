"""Scale out on Ray: evaluation sweeps and many training runs (development tools).

- ``panel.py``: ``aura-mem-bench closed-loop --ray``: the closed-loop panel's episodes
  sharded over a cluster; the JSON equals the single-process run's except for timing.
- ``train_sweep.py``: ``aura-mem-bench train-sweep``: budgets x seeds training runs of
  ``aura-mem-train``'s training function on one feature extraction, one model card per run
  and a summary table.
- ``bench.py``: ``make bench-scale`` -> docs/results/scale.md (+ .json).

Feature extraction on Ray lives in the product (``aura_mem_ros/retrain/features.py``,
``ray_features.py``) because ``aura-mem-train --ray`` is a product command; connecting to a
cluster (``--ray auto|ADDRESS|local``) is ``aura_mem_ros/retrain/cluster.py``, shared by all.
"""
