"""Net and node options: unknown options and wrong types are refused with a ConfigError naming them."""

from __future__ import annotations

import json

import pytest

import netrun
from netrun.config import NodeConfig, parse_net_config, update_node_config
from netrun.graphs import chain


@pytest.fixture
def net():
    with netrun.Net(chain("S", "A"), db=None) as net:
        yield net


class FakeClock:
    def now(self):
        raise AssertionError

    def monotonic(self):
        raise AssertionError

    def sleep(self, seconds):
        raise AssertionError


# -- net options --------------------------------------------------------------------------------

BAD_NET_OPTIONS = [
    ({"durability": "fast"}, "durability"),
    ({"on_error": "explode"}, "on_error"),
    ({"history_chunk_size": 0}, "history_chunk_size"),
    ({"history_chunk_size": True}, "history_chunk_size"),
    ({"history_max_size": -1}, "history_max_size"),
    ({"consumed_packet_storage": "yes"}, "consumed_packet_storage"),
    ({"consumed_packet_storage_limit": 2.5}, "consumed_packet_storage_limit"),
    # past 64 bits: once accepted, then an OverflowError from SQLite when the net committed
    ({"consumed_packet_storage_limit": 2**63}, "consumed_packet_storage_limit"),
    ({"history_max_size": 10**30}, "history_max_size"),
    ({"history_flush_on_pause": 1}, "history_flush_on_pause"),
    ({"history_file": ""}, "history_file"),
    ({"error_callback": "print"}, "error_callback"),
    ({"thread_pools": {"io": {"size": 0}}}, "thread_pools"),
    ({"thread_pools": ["io"]}, "thread_pools"),
    ({"process_pools": {"cpu": {"size": 2, "workers": 3}}}, "process_pools"),
    ({"dead_letter_queue": "disk"}, "dead_letter_queue"),
    ({"dead_letter_queue": "file"}, "dead_letter_path"),
    ({"dead_letter_queue": "callback"}, "dead_letter_callback"),
    ({"clock": object()}, "clock"),
]


def test_unknown_net_option_is_refused_by_name():
    with pytest.raises(netrun.ConfigError, match="durabilty") as caught:
        parse_net_config({"durabilty": "full"})
    assert caught.value.option == "durabilty"


@pytest.mark.parametrize(("options", "option"), BAD_NET_OPTIONS, ids=[o for _, o in BAD_NET_OPTIONS])
def test_bad_net_option_value_is_refused_by_name(options, option):
    with pytest.raises(netrun.ConfigError) as caught:
        parse_net_config(options)
    assert option in str(caught.value)
    assert caught.value.option.startswith(option)


def test_dead_letter_file_mode_message_names_both_options():
    with pytest.raises(netrun.ConfigError) as caught:
        parse_net_config({"dead_letter_queue": "file"})
    assert "dead_letter_queue" in str(caught.value) and "dead_letter_path" in str(caught.value)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_net_config({"on_error": "explode"})


@pytest.mark.parametrize(("options", "option"), BAD_NET_OPTIONS[:6] + [({"nope": 1}, "nope")],
                         ids=[o for _, o in BAD_NET_OPTIONS[:6]] + ["unknown"])
def test_net_refuses_bad_options_before_touching_the_file(tmp_path, options, option):
    path = tmp_path / "run.db"
    with pytest.raises(netrun.ConfigError, match=option):
        netrun.Net(chain("S", "A"), db=path, **options)
    assert list(tmp_path.iterdir()) == []


def test_defaults():
    config = parse_net_config({})
    assert (config.durability, config.on_error, config.history_max_size, config.history_chunk_size) == (
        "normal", "pause", 10_000, 100)
    assert config.consumed_packet_storage is False and config.history_flush_on_pause is True
    assert config.dead_letter_queue == "memory"


def test_valid_net_options_are_accepted():
    def on_error(error):
        pass

    clock = FakeClock()
    config = parse_net_config({
        "durability": "full", "on_error": "raise", "error_callback": on_error,
        "consumed_packet_storage": True, "consumed_packet_storage_limit": 5,
        "consumed_packet_storage_path": "values/", "history_max_size": None, "history_file": "h.jsonl",
        "history_chunk_size": 1, "history_flush_on_pause": False,
        "thread_pools": {"io": {"size": 4}}, "process_pools": {"cpu": {}},
        "dead_letter_queue": "file", "dead_letter_path": "dlq/", "clock": clock,
    })
    assert config.durability == "full" and config.on_error == "raise" and config.error_callback is on_error
    assert config.consumed_packet_storage_limit == 5 and config.history_max_size is None
    assert config.thread_pools == {"io": {"size": 4}} and config.process_pools == {"cpu": {}}
    assert config.dead_letter_path == "dlq/" and config.clock is clock


def test_callable_dead_letter_queue_is_accepted_and_stored_as_callback():
    def dlq(entry):
        pass

    config = parse_net_config({"dead_letter_queue": dlq})
    assert config.dead_letter_queue is dlq
    assert config.to_json()["dead_letter_queue"] == "callback"


def test_net_config_to_json_leaves_out_callables_and_clock():
    stored = parse_net_config({"error_callback": print, "durability": "full"}).to_json()
    assert "error_callback" not in stored and "clock" not in stored and "dead_letter_callback" not in stored
    assert stored["durability"] == "full"
    json.dumps(stored)


def test_net_stores_its_options_in_net_meta(tmp_path):
    with netrun.Net(chain("S", "A"), db=tmp_path / "run.db", durability="full", history_chunk_size=7) as net:
        stored = json.loads(net.query("SELECT value FROM net_meta WHERE key = 'config'")[0]["value"])
    assert stored["durability"] == "full" and stored["history_chunk_size"] == 7


# -- node options -------------------------------------------------------------------------------

BAD_NODE_OPTIONS = [
    ({"capture_stdout": "no"}, "capture_stdout"),
    ({"echo_stdout": 1}, "echo_stdout"),
    ({"dead_letter_queue": None}, "dead_letter_queue"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": "5"}, "timeout"),
    ({"rate_limit_per_second": 0}, "rate_limit_per_second"),
    ({"max_parallel_epochs": 0}, "max_parallel_epochs"),
    ({"retries": -1}, "retries"),
    ({"retries": 1.5}, "retries"),
    ({"retry_wait": -0.1}, "retry_wait"),
    # once accepted, then an OverflowError from time.sleep() when a failed attempt waited to retry
    ({"retry_wait": float("inf")}, "retry_wait"),
    ({"retry_wait": 1e300}, "retry_wait"),
    ({"retry_wait": float("nan")}, "retry_wait"),
    ({"defer_net_actions": "yes"}, "defer_net_actions"),
    ({"pool_init_mode": "lazy"}, "pool_init_mode"),
    ({"pool": "gpu"}, "pool"),
    ({"pool": []}, "pool"),
]


def test_unknown_node_option_is_refused_by_name():
    with pytest.raises(netrun.ConfigError, match="capture_stdot") as caught:
        update_node_config("A", NodeConfig(), {"capture_stdot": False}, pools=set())
    assert caught.value.option == "capture_stdot"
    assert "'A'" in str(caught.value)


@pytest.mark.parametrize(("options", "option"), BAD_NODE_OPTIONS, ids=[str(o) for o, _ in BAD_NODE_OPTIONS])
def test_bad_node_option_value_is_refused_by_name(options, option):
    with pytest.raises(netrun.ConfigError, match=option) as caught:
        update_node_config("A", NodeConfig(), options, pools={"io"})
    assert caught.value.option == option


def test_pool_naming_an_undefined_pool_names_it():
    with pytest.raises(netrun.ConfigError, match="gpu"):
        update_node_config("A", NodeConfig(), {"pool": ["io", "gpu"]}, pools={"io"})


def test_retries_without_defer_net_actions_is_refused_naming_defer_net_actions():
    with pytest.raises(netrun.ConfigError, match="defer_net_actions"):
        update_node_config("A", NodeConfig(), {"retries": 2}, pools=set())


def test_retries_with_defer_net_actions_in_the_same_call_is_valid_config():
    updated = update_node_config("A", NodeConfig(), {"retries": 2, "defer_net_actions": True}, pools=set())
    assert (updated.retries, updated.defer_net_actions) == (2, True)


def test_update_node_config_returns_a_new_config_and_keeps_earlier_options():
    first = update_node_config("A", NodeConfig(), {"timeout": 5}, pools=set())
    second = update_node_config("A", first, {"capture_stdout": False}, pools=set())
    assert NodeConfig().timeout is None
    assert (second.timeout, second.capture_stdout) == (5, False)


@pytest.mark.parametrize(("options", "option"), BAD_NODE_OPTIONS + [({"nope": 1}, "nope")],
                         ids=[str(o) for o, _ in BAD_NODE_OPTIONS] + ["unknown"])
def test_set_node_config_refuses_bad_options_and_keeps_the_old_config(net, options, option):
    net.set_node_config("A", timeout=5)
    with pytest.raises(netrun.ConfigError, match=option):
        net.set_node_config("A", **{"capture_stdout": False, **options})
    config = net.get_node_config("A")
    assert config["timeout"] == 5 and config["capture_stdout"] is True


def test_set_node_config_retries_without_defer_names_defer_net_actions(net):
    with pytest.raises(netrun.ConfigError, match="defer_net_actions"):
        net.set_node_config("A", retries=2)
    assert net.get_node_config("A")["retries"] == 0


def test_set_node_config_pool_undefined_in_the_net_is_refused(net):
    with pytest.raises(netrun.ConfigError, match="gpu"):
        net.set_node_config("A", pool="gpu")
    assert net.get_node_config("A")["pool"] is None


def test_set_node_config_on_unknown_node_raises_not_found(net):
    with pytest.raises(netrun.NotFoundError, match="Nope"):
        net.set_node_config("Nope", timeout=1)


def test_get_node_config_on_unknown_node_raises_not_found(net):
    with pytest.raises(netrun.NotFoundError, match="Nope"):
        net.get_node_config("Nope")


def test_node_config_defaults(net):
    assert net.get_node_config("A") == NodeConfig().to_json()
    assert net.get_node_config("A")["capture_stdout"] is True
    assert net.get_node_config("A")["dead_letter_queue"] is True


def test_set_node_config_accepts_valid_options_and_get_node_config_reflects_them(net):
    net.set_node_config("A", capture_stdout=False, echo_stdout=True, dead_letter_queue=False, timeout=2.5,
                        rate_limit_per_second=10, max_parallel_epochs=3, retry_wait=1,
                        pool_init_mode="global")
    config = net.get_node_config("A")
    assert config == {**NodeConfig().to_json(), "capture_stdout": False, "echo_stdout": True,
                      "dead_letter_queue": False, "timeout": 2.5, "rate_limit_per_second": 10,
                      "max_parallel_epochs": 3, "retry_wait": 1, "pool_init_mode": "global"}
    assert net.get_node_config("S") == NodeConfig().to_json()


def test_set_node_config_is_cumulative(net):
    net.set_node_config("A", timeout=3)
    net.set_node_config("A", capture_stdout=False)
    config = net.get_node_config("A")
    assert (config["timeout"], config["capture_stdout"]) == (3, False)


def test_set_node_config_is_stored_in_node_settings(net):
    net.set_node_config("A", timeout=4, echo_stdout=True)
    row = net.query("SELECT config FROM node_settings WHERE node_name = 'A'")[0]
    stored = json.loads(row["config"])
    assert stored["timeout"] == 4 and stored["echo_stdout"] is True


@pytest.mark.parametrize("lease", [0, -1, "x", None, True, float("nan"), float("inf"), 1e300, 3e11])
def test_a_lease_that_is_not_a_positive_number_of_seconds_up_to_a_year_is_refused(lease):
    with pytest.raises(netrun.ConfigError, match="lease_seconds"):
        parse_net_config({"lease_seconds": lease})


def test_a_lease_of_a_year_is_accepted():
    assert parse_net_config({"lease_seconds": 365 * 24 * 3600}).lease_seconds == 365 * 24 * 3600
    assert parse_net_config({"lease_seconds": 0.5}).lease_seconds == 0.5


@pytest.mark.parametrize("option", ["dead_letter_path", "consumed_packet_storage_path", "history_file"])
def test_a_path_option_that_cannot_serve_is_refused_before_the_file_is_touched(tmp_path, option):
    # A folder under a regular file cannot be made: Net() once raised FileNotFoundError/NotADirectoryError
    # from inside the half-opened net, after creating its database, and kept the owner lock, so that the
    # same process could neither resume nor recreate the file (NetInUse naming its own pid).
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    options = {"dead_letter_path": {"dead_letter_queue": "file", "dead_letter_path": str(blocker / "dlq")},
               "consumed_packet_storage_path": {"consumed_packet_storage": True,
                                                "consumed_packet_storage_path": str(blocker / "kept")},
               "history_file": {"history_file": str(tmp_path)}}[option]
    path = tmp_path / "run.db"
    with pytest.raises(netrun.ConfigError, match=option) as caught:
        netrun.Net(chain("S", "A"), db=path, **options)
    assert caught.value.option == option
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    with netrun.Net(chain("S", "A"), db=path) as net:  # no lock left behind
        net.close()
    with pytest.raises(netrun.ConfigError, match=option):
        netrun.Net.resume(path, **options)
    netrun.Net.resume(path).close()
