"""mininova_lab.tempest.override: the moves run's changes to
tests/tempest/tempest.conf.in land in the right sections, and nothing else
changes."""
import configparser
import os

from mininova_lab import tempest
from mininova_lab.tempest import MOVES_CONF


def parse(text):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_a_key_is_replaced_in_its_section_only():
    conf = "[a]\nx = 1\n[b]\nx = 2\n"
    assert tempest.override(conf, "b", "x", "3") == "[a]\nx = 1\n[b]\nx = 3\n"


def test_a_missing_key_or_section_is_added():
    conf = "[a]\nx = 1\n[b]\ny = 2\n"
    assert parse(tempest.override(conf, "a", "z", "9"))["a"]["z"] == "9"
    assert parse(tempest.override(conf, "b", "z", "9"))["b"]["z"] == "9"
    added = parse(tempest.override(conf, "c", "z", "9"))
    assert added["c"]["z"] == "9" and added["a"]["x"] == "1" and added["b"]["y"] == "2"


def test_the_moves_run_switches_the_moves_on():
    with open(os.path.join(tempest.TEMPEST_FILES, "tempest.conf.in")) as f:
        base = f.read()
    conf = base
    for section, key, value in MOVES_CONF:
        conf = tempest.override(conf, section, key, value)
    before, after = parse(base), parse(conf)
    features = after["compute-feature-enabled"]
    assert (features["cold_migration"], features["live_migration"],
            features["block_migration_for_live_migration"]) == ("True", "True", "True")
    assert after["compute"]["min_compute_nodes"] == "2"
    assert before["compute-feature-enabled"]["cold_migration"] == "False"
    changed = {(s, k) for s in after.sections() for k in after[s]
               if not before.has_option(s, k) or before[s][k] != after[s][k]}
    assert changed == {(s, k) for s, k, _ in MOVES_CONF}
