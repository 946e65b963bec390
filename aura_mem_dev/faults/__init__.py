"""Fault injection for the aura_mem node: run it as a real process, break its inputs, disk and
peers on purpose, and record what it did (``make bench-faults``, ``test/test_faults_*.py``).

``harness``: start/stop/kill the node process and a probe node that talks to it over DDS.
``session``: one node under test (fault backbone, state file) and the probe, with the
helpers every row reads the node through. ``row``: a row of the table and its named checks.
One function per row, by kind: ``inputs`` (bad images, proprio, instructions), ``transport``
(camera dropout, incompatible QoS), ``persistence`` (kills inside the atomic write, corrupt
state files, an unwritable directory), ``process`` (a raising backbone, kill -9 of the node).
Safe serving (issue 13) adds ``freshness`` (results stale at publish time, a joint-state
stream that stops, stamp pairing), ``stopping`` (the safe action with an inference in flight,
signals during start-up, the is_safe_action mark) and ``tooling`` (the launch file's wiring
recorded and replayed, parameter services, colcon test), with their helpers in
``serving_probe`` (service calls, lifecycle transitions, a node of a row's own) and
``launch_file`` (the launch file evaluated without ``launch``).
``inject``: the malformed messages. ``backbone``: a backbone that raises on demand.
``crash``: a child that is SIGKILLed while persisting state.
"""
