"""oneservice-cli's output and its errors, without a node."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from oneservice import cli


def test_tables_align_columns_and_mark_empty_cells():
    text = cli.table(["A", "LONGER"], [["x", None], ["yyyy", 5]])
    assert text.splitlines() == ["A     LONGER", "x     -", "yyyy  5"]


ANSWERS = Path(__file__).parent.parent / "fixtures" / "answers"
NOW_MS = 1764590000000  # the clock the recorded answers were taken at


def answer(name: str):
    return json.loads((ANSWERS / f"{name}.json").read_text())


def test_info_lines_as_zerotier_cli_prints_them():
    assert cli.info_line(answer("oneservice-status")) == "200 info 3f1a2b3c4d 0.1.0 OFFLINE"
    assert cli.info_line(answer("zerotier-1.14.1-status")) == "200 info 8056c2e21c 1.14.1 ONLINE"
    assert cli.info_line({"address": "x", "version": "1", "online": True,
                          "tcpFallbackActive": True}).endswith(" TUNNELED")  # fmt: skip


def test_listnetworks_lines_for_both_nodes():
    assert cli.network_lines(answer("oneservice-network")).splitlines() == [
        "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>",
        "200 listnetworks 3f1a2b3c4d000001 exit - OK PRIVATE onet3c4d000001 10.147.17.10/24",
    ]
    assert cli.network_lines(answer("zerotier-1.14.1-network")).splitlines()[1] == (
        "200 listnetworks 8056c2e21c000001 lab 32:a1:b2:c3:d4:e5 OK PRIVATE ztabcdef12 "
        "10.147.17.5/24,fd80:56c2:e21c:0:199:9300:0:1/88"
    )


def test_listpeers_paths_carry_ms_since_send_and_receive_and_latency_is_whole():
    assert cli.peer_lines(answer("oneservice-peer"), NOW_MS).splitlines() == [
        "200 listpeers <ztaddr> <path> <latency> <version> <role> <kind>",
        "200 listpeers a1b2c3d4e5 192.0.2.1/9993;100;250 2 - LEAF direct",
        "200 listpeers b2c3d4e5f6 3f00000001/0;1000;2000 5 - LEAF relayed",
    ]
    assert cli.peer_lines(answer("zerotier-1.14.1-peer"), NOW_MS).splitlines()[1:] == [
        "200 listpeers a1b2c3d4e5 192.0.2.1/9993;1000;500 12 1.14.1 LEAF",
        "200 listpeers 778cde7190 - -1 - PLANET",
    ]


def test_peers_is_zerotier_clis_table_and_relayed_peers_say_relay():
    assert cli.peer_table(answer("oneservice-peer"), NOW_MS).splitlines() == [
        "200 peers",
        "<ztaddr>   <ver>  <role> <lat> <link> <lastTX> <lastRX> <path> <kind>",
        "a1b2c3d4e5 -      LEAF       2 DIRECT 100      250      192.0.2.1/9993 direct",
        "b2c3d4e5f6 -      LEAF       5 RELAY relayed",
    ]
    assert cli.peer_table(answer("zerotier-1.14.1-peer"), NOW_MS).splitlines()[2:] == [
        "a1b2c3d4e5 1.14.1 LEAF      12 DIRECT 1000     500      192.0.2.1/9993",
        "778cde7190 -      PLANET    -1 RELAY",
    ]


@pytest.mark.parametrize(
    ("field", "printed"),
    [("allowDefault", "1"), ("allowGlobal", "0"), ("status", "OK"), ("mtu", "1420"),
     ("fullTunnel", "on"), ("ip", "10.147.17.10"), ("ip4", "10.147.17.10"), ("ip6", ""),
     ("routes", '[{"flags":0,"metric":0,"target":"10.147.17.0/24","via":null},'
                '{"flags":0,"metric":0,"target":"0.0.0.0/0","via":"10.147.17.1"}]'),
     ("device", "-")],
)  # fmt: skip
def test_get_prints_raw_values(field, printed):
    assert cli.get_value(answer("oneservice-network")[0], field) == printed


def test_get_of_zerotier_addresses_splits_families():
    network = answer("zerotier-1.14.1-network")[0]
    assert cli.get_value(network, "ip6") == "fd80:56c2:e21c:0:199:9300:0:1"
    assert cli.get_value(network, "ip") == "10.147.17.5\nfd80:56c2:e21c:0:199:9300:0:1"
    with pytest.raises(cli.CliError, match='unknown property name "nothing"'):
        cli.get_value(network, "nothing")


def test_set_sends_json_booleans_and_refuses_unclear_values():
    assert cli.flag_value("allowDefault", "1") is True
    assert cli.flag_value("allowDNS", "0") is False
    assert cli.flag_value("allowGlobal", "true") is True
    assert cli.flag_value("allowManaged", "10.0.0.0/8,192.168.0.0/16") == [
        "10.0.0.0/8", "192.168.0.0/16"]  # fmt: skip
    with pytest.raises(cli.CliError, match="allowDefault takes 1 or 0"):
        cli.flag_value("allowDefault", "maybe")
    with pytest.raises(cli.CliError, match='unknown flag "allowEverything"'):
        cli.flag_value("allowEverything", "1")


def test_json_output_is_zerotier_clis_dump():
    assert cli.json_dump({"b": [1, True], "a": "é"}) == (
        '{\n "a": "é",\n "b": [\n  1,\n  true\n ]\n}'
    )
    assert cli.json_dump([]) == "[]"


def test_tables_never_show_python_values():
    text = cli.table(["A", "B", "C"], [[True, None, ["x", 1]], [False, 1.5, {"k": None}]])
    assert text.splitlines()[1:] == ['yes  -  ["x",1]', 'no   1  {"k":null}']
    for forbidden in ("True", "False", "None", "'"):
        assert forbidden not in text


class FakeClient:
    """Answers from recorded JSON, as a node (ours or zerotier-one) would."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.sent: list = []

    def call(self, method, path, body=None):
        self.sent.append((method, path, body))
        found = self.answers[(method, path)]
        if isinstance(found, cli.ApiAnswer):
            raise found
        return found


ZEROTIER_ONE = {
    ("GET", "/status"): answer("zerotier-1.14.1-status"),
    ("GET", "/peer"): answer("zerotier-1.14.1-peer"),
    ("GET", "/network"): answer("zerotier-1.14.1-network"),
    ("GET", "/network/8056c2e21c000001"): answer("zerotier-1.14.1-network")[0],
    ("POST", "/network/8056c2e21c000001"): answer("zerotier-1.14.1-network")[0],
    ("GET", "/moon"): [],
    ("GET", "/controller/network/8056c2e21c000001/member"): {"a1b2c3d4e5": 3},
    ("GET", "/controller/network/8056c2e21c000001/member/a1b2c3d4e5"): {
        "id": "a1b2c3d4e5", "address": "a1b2c3d4e5", "authorized": True, "name": "",
        "ipAssignments": ["10.147.17.5"], "revision": 3, "activeBridge": False},
}  # fmt: skip


@pytest.mark.parametrize("command", [
    ["info"], ["status"], ["listnetworks"], ["listpeers"], ["peers"], ["listmoons"],
    ["get", "8056c2e21c000001", "status"], ["set", "8056c2e21c000001", "allowDefault=1"],
    ["members", "8056c2e21c000001"], ["-j", "peers"], ["-j", "listnetworks"],
])  # fmt: skip
def test_pointed_at_zerotier_one_every_command_answers_without_a_traceback(command, capsys):
    client = FakeClient(ZEROTIER_ONE)
    args = cli.parse_args(command)
    output = cli.run(args, client)
    for forbidden in ("True", "False", "None", "Traceback", "{'"):
        assert forbidden not in output, (command, output)
    if command[0] == "set":
        assert client.sent[-1] == ("POST", "/network/8056c2e21c000001", {"allowDefault": True})


def test_an_error_answer_is_printed_as_zerotier_cli_prints_it(tmp_path, capsys, monkeypatch):
    body = '{"error":"not a member of 0123456789abcdef: join it first"}'
    client = FakeClient({("POST", "/network/0123456789abcdef"): cli.ApiAnswer(404, body)})
    monkeypatch.setattr(cli, "Client", lambda *a: client)
    assert cli.main(["-T", "t", "set", "0123456789abcdef", "allowDefault=1"]) == 1
    assert capsys.readouterr().out == f"404 set {body}\n"


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


def test_the_cli_knows_every_network_flag_and_sends_port_lists_as_lists():
    from oneservice import cli
    from oneservice.routing.flags import FLAG_NAMES

    assert sorted((*cli.BOOLEAN_FLAGS, *cli.PORT_FLAGS)) == sorted(FLAG_NAMES)
    assert cli.flag_value("fullTunnelOnly", "tcp/80,udp/53") == ["tcp/80", "udp/53"]
    assert cli.flag_value("fullTunnelExcept", "") == []
    assert cli.flag_value("fullTunnelQuarters", "1") is True
