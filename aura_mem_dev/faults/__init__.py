"""Fault injection for the aura_mem node: run it as a real process, break its inputs, disk and
peers on purpose, and record what it did (``make bench-faults``, ``test/test_faults_*.py``).

``harness``: start/stop/kill the node process and a probe node that talks to it over DDS.
``session``: one node under test (fault backbone, state file) and the probe, with the
helpers every row reads the node through. ``row``: a row of the table and its named checks.
One function per row, by kind: ``inputs`` (bad images, proprio, instructions), ``transport``
(camera dropout, incompatible QoS), ``persistence`` (kills inside the atomic write, corrupt
state files, an unwritable directory), ``process`` (a raising backbone, kill -9 of the node).
``inject``: the malformed messages. ``backbone``: a backbone that raises on demand.
``crash``: a child that is SIGKILLed while persisting state.
"""
