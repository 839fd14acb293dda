"""A generator function is no node function: calling it runs none of its code. A source node
written with `yield` by mistake finished having sent nothing, silently (found by attacking netrun
with a node function that yields). It is refused when registered, and a callable that returns a
generator (a partial, an object) fails its epoch with a message that says so."""

from __future__ import annotations

import pytest

import netrun
from netrun.checks import check_definition
from netrun.graphs import chain


def _generator_source(ctx, packets):
    for value in range(3):
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
        yield value


async def _async_generator_source(ctx, packets):
    yield None


class _Wrapped:
    """A callable object whose call returns a generator: only its result tells."""

    def __call__(self, ctx, packets):
        return _generator_source(ctx, packets)


@pytest.mark.parametrize("func", [_generator_source, _async_generator_source])
@pytest.mark.parametrize("role", ["exec_node_func", "start_node_func", "stop_node_func", "exec_failed_node_func"])
def test_a_generator_function_is_refused_naming_node_and_role(tmp_path, func, role):
    with netrun.Net(chain("Source", "Sink"), db=str(tmp_path / "net.db")) as net:
        with pytest.raises(netrun.ConfigError) as raised:
            net.set_node_exec("Source", **{"exec_node_func": lambda ctx, packets: None, role: func})
        message = str(raised.value)
        assert "'Source'" in message and role in message and "generator" in message, message


def test_a_callable_returning_a_generator_fails_its_epoch_instead_of_finishing_empty(tmp_path):
    with netrun.Net(chain("Source", "Sink"), db=str(tmp_path / "net.db"), on_error="continue") as net:
        net.set_node_exec("Source", _Wrapped())
        net.set_node_exec("Sink", lambda ctx, packets: None)
        net.inject_source_epoch("Source")
        net.start()
        [epoch] = net.query("SELECT state, error_type, error FROM epochs WHERE node_name = 'Source'")
        assert (epoch["state"], epoch["error_type"]) == ("failed", "ContextUsageError")
        assert "'Source'" in epoch["error"] and "generator" in epoch["error"], epoch["error"]


def test_validate_reports_a_generator_function_with_its_line(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text('[nodes.Source]\nout_ports = ["out"]\n'
                    'exec_node_func = "tests.integration.test_generator_functions._generator_source"\n')
    checked = check_definition(str(path))
    [error] = checked.errors
    assert "net.toml:3:" in str(error) and "'Source'" in str(error) and "generator function" in str(error), error
    with pytest.raises(netrun.DefinitionError):
        netrun.Net.load_definition(str(path))
