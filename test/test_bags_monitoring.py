"""The monitoring config matches what the node really publishes: every rqt_plot series is a
numeric field of a topic the node publishes, and every diagnostic_aggregator prefix matches a
status the node sends (a rename on either side would leave an empty plot / an 'Other' item)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_bags_support import record_node_bag

from aura_mem_ros.bags.read import iter_messages, topic_types
from aura_mem_ros.bags.types import make_typestore

pytestmark = pytest.mark.timeout(60)
CONFIG = Path(__file__).resolve().parents[1] / "config"
NUMERIC = {"float32", "float64", "uint64", "uint32", "int64", "int32", "bool", "uint8"}


def test_rqt_topics_and_aggregator_prefixes_match_the_node(tmp_path, ros_context, executor):
    bag, _ = record_node_bag(ros_context, executor, tmp_path / "bag", frames=5)
    types = topic_types(bag)
    store = make_typestore()
    plots = yaml.safe_load((CONFIG / "rqt" / "rqt_plot_topics.yaml").read_text())
    for window in plots.values():
        for series in window["topics"]:
            topic, field = series.rsplit("/", 1)
            assert topic in types, f"{topic} (rqt_plot {series}) is not published by the node"
            assert series in window["command"]
            fields = dict(store.fielddefs[types[topic]][1])
            assert field in fields, f"{types[topic]} has no field {field}"
            assert fields[field][1][0] in NUMERIC, f"{series} is not numeric"

    names = {s.name for _, _, a in iter_messages([bag], ["/diagnostics"]) for s in a.status}
    agg = yaml.safe_load((CONFIG / "diagnostic_aggregator.yaml").read_text())
    group = agg["analyzers"]["ros__parameters"]["aura_mem"]["analyzers"]
    prefixes = {p for a in group.values() for p in a["find_and_remove_prefix"]}
    assert prefixes == {n for n in names if n.startswith("aura_mem: ")}, (prefixes, names)
