from __future__ import annotations

import pytest

from oneservice.__main__ import main, parse_args
from oneservice.settings import Settings, SettingsError, load_local_conf, parse_local_conf


def test_missing_file_means_defaults(tmp_path):
    assert load_local_conf(tmp_path) == Settings()


def test_full_settings(tmp_path):
    (tmp_path / "local.conf").write_text(
        '{"settings": {"primaryPort": 0, "interfacePrefixBlacklist": ["vpn"],'
        ' "interfaceAllowlist": ["tun7"]}}'
    )
    assert load_local_conf(tmp_path) == Settings(0, ("vpn",), ("tun7",))


def test_uplink_metrics_are_read_as_interface_name_and_metric():
    settings = parse_local_conf({"settings": {"uplinkMetrics": {"wlan0": 100, "wwan0": 900}}})
    assert settings.uplink_metrics == (("wlan0", 100), ("wwan0", 900))


def test_booleans_default_as_documented_and_can_be_turned_either_way():
    assert Settings().tun_offload and not Settings().relay
    turned = parse_local_conf({"settings": {"tunOffload": False, "relay": True}})
    assert (turned.tun_offload, turned.relay) == (False, True)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object, got list"),
        ({"setings": {}}, "unknown key setings; known keys: roots, settings"),
        ({"allowExitNode": True}, "did you mean settings.allowExitNode?"),
        ({"settings": {}, "primaryPort": 1}, "did you mean settings.primaryPort?"),
        ({"roots": [{"identity": "x", "endpoints": ["192.0.2.1/9993"]}]}, r"roots\[0\]: identity"),
        ({"roots": [{"identity": "x"}]}, "roots"),
        ({"settings": {"primaryport": 1}}, "unknown key settings.primaryport"),
        ({"settings": {"primaryPort": 70000}}, "settings.primaryPort must be 0-65535"),
        ({"settings": {"primaryPort": True}}, "settings.primaryPort must be 0-65535"),
        ({"settings": {"primaryPort": "9993"}}, "got '9993'"),
        ({"settings": []}, "settings must be an object, got list"),
        ({"settings": {"interfaceAllowlist": "eth0"}}, "must be a list of interface names"),
        ({"settings": {"interfacePrefixBlacklist": [""]}}, "non-empty strings"),
        ({"settings": {"interfaceAllowlist": ["x" * 16]}}, "at most 15 characters"),
        ({"settings": {"tunOffload": "no"}}, "settings.tunOffload must be true or false"),
        ({"settings": {"uplinkMetrics": ["wlan0"]}}, "uplinkMetrics must be an object"),
        ({"settings": {"uplinkMetrics": {"wlan0": -1}}}, "uplinkMetrics.wlan0 must be a whole"),
        ({"settings": {"uplinkMetrics": {"wlan0": True}}}, "got true"),
        ({"settings": {"uplinkMetrics": {"x" * 16: 1}}}, "at most 15 characters"),
    ],
)
def test_mistakes_are_named(document, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        parse_local_conf(document)


def test_broken_json_names_file_line_and_column(tmp_path):
    (tmp_path / "local.conf").write_text('{\n  "settings": {,}\n}')
    with pytest.raises(SettingsError, match=r"local.conf: not valid JSON at line 2 column 16"):
        load_local_conf(tmp_path)


def test_main_reports_config_errors_with_exit_2_and_touches_nothing(tmp_path, capsys):
    (tmp_path / "local.conf").write_text("{oops")
    assert main(["--home", str(tmp_path)]) == 2
    assert "oneservice: error:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.conf"]


def test_the_command_line_reads_each_option_in_either_form(tmp_path):
    args = parse_args([f"--home={tmp_path}", "--port", "0", "--log-level", "debug"])
    assert (args.home, args.port, args.log_level) == (tmp_path, 0, "debug")
    assert parse_args(["--home", str(tmp_path)]).port is None
    assert parse_args([]).log_level == "info"


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--port", "x"], "--port needs a whole number, got 'x'"),
        (["--port", "\u00b2"], "--port needs a whole number"),  # a digit to str, not to int
        (["--port"], "option --port requires argument"),
        (["--log-level", "loud"], "--log-level must be one of debug, info, warning, error"),
        (["--home="], "--home needs a directory"),
        (["--bogus"], "option --bogus not recognized"),
        (["--h"], "option --h not a unique prefix"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_a_wrong_command_line_prints_the_usage_and_exits_2(argv, why, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.startswith("usage: python -m oneservice") and why in err, err


def test_help_and_version_print_and_exit_0(capsys):
    for argv, shown in ((["--help"], "--log-level LEVEL"), (["--version"], "oneservice 0.")):
        with pytest.raises(SystemExit) as stopped:
            parse_args(argv)
        assert stopped.value.code == 0 and shown in capsys.readouterr().out


def test_main_rejects_bad_port(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "--port", "99999"]) == 2
    assert "--port must be 0-65535" in capsys.readouterr().err


def test_unusable_home_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--home", str(blocker / "sub")]) == 2
    assert "cannot create home directory" in capsys.readouterr().err


def test_a_controller_database_is_a_connection_string_whose_password_is_never_echoed():
    conninfo = "postgresql://oneservice:hunter2@db.example/oneservice"
    settings = parse_local_conf({"settings": {"controllerDatabase": conninfo}})
    assert settings.controller_database == conninfo
    assert "hunter2" not in repr(settings)
    assert parse_local_conf({"settings": {"controllerDatabase": "host=/run/x dbname=y"}})
    for wrong in ("hunter2-not-a-connection-string", 5):
        with pytest.raises(SettingsError, match="controllerDatabase must be a PostgreSQL") as e:
            parse_local_conf({"settings": {"controllerDatabase": wrong}})
        assert "hunter2" not in str(e.value)
