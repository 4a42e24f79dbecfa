"""oneservice-cli's output and its errors, without a node."""

from __future__ import annotations

import socket

import pytest

from oneservice import cli


def test_tables_align_columns_and_mark_empty_cells():
    text = cli.table(["A", "LONGER"], [["x", None], ["yyyy", 5]])
    assert text.splitlines() == ["A     LONGER", "x     -", "yyyy  5"]


def test_plain_lines_match_zerotier_cli():
    assert cli.info_line({"address": "8056c2e21c", "version": "0.1.0", "online": True}) == (
        "200 info 8056c2e21c 0.1.0 ONLINE"
    )
    peers = [{"address": "a1b2c3d4e5", "latency": 1.5, "role": "LEAF", "paths": [
        {"address": "192.0.2.1/9993", "preferred": True}]}]  # fmt: skip
    assert cli.peer_lines(peers).splitlines()[1] == (
        "200 listpeers a1b2c3d4e5 192.0.2.1/9993 1.5 - LEAF"
    )


def test_flag_values_pass_through_and_cidrs_become_lists():
    assert cli.flag_value("1") == "1"
    assert cli.flag_value("10.0.0.0/8,192.168.0.0/16") == ["10.0.0.0/8", "192.168.0.0/16"]


def test_a_stopped_service_is_named_with_what_to_do(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = cli.Client(tmp_path, port, "token")
    with pytest.raises(cli.CliError, match=f"service not running on port {port}: start it"):
        client.call("GET", "/status")


def test_a_missing_token_file_says_how_to_pass_one(tmp_path):
    with pytest.raises(cli.CliError, match="pass -D<home> or -T<token>"):
        cli.Client(tmp_path, 9993, None)


def test_usage_errors_exit_1_with_a_message(tmp_path, capsys):
    assert cli.main([f"-D{tmp_path}", "-T", "t", "-p", "1", "set", "0123456789abcdef"]) == 1
    assert "usage: set <network id> <flag>=<value>" in capsys.readouterr().err
