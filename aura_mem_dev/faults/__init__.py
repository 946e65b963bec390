"""Fault injection for the aura_mem node: run it as a real process, break its inputs, disk and
peers on purpose, and record what it did (``make bench-faults``, ``test/test_faults_*.py``).

``harness``: start/stop/kill the node process and a probe node that talks to it over DDS.
``inject``: the malformed messages. ``backbone``: a backbone that raises on demand.
``crash``: a child that is SIGKILLed while persisting state. ``scenarios``: one function per
row of the fault table. ``report``: the markdown table.
"""
