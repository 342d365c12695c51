from dataclasses import replace
from pathlib import Path

import pytest

from openscws.config import Settings, SipSettings, load, notes, resolve, to_toml
from openscws.errors import ConfigError


def test_defaults_without_a_file() -> None:
    settings = load(None)
    assert settings.card.ports == (3516, 4116)
    assert settings.card.tls_ports == (4116,)
    assert settings.card.initial_channels >= 2
    assert settings.gateway.host == "127.0.0.1"


def test_to_toml_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "openscws.toml"
    path.write_text(
        "[card]\nbuffer_size = 4096\nports = [3516]\ntls_ports = []\n"
        "[card.limits]\nmax_body = 1000\n"
        "[gateway]\nbusy_timeout = 2.5\n[gateway.port_map]\n3516 = 8080\n"
        '[trace]\nenabled = true\npcap = "x.pcap"\n'
    )
    settings = load(path)
    assert settings.card.buffer_size == 4096
    assert settings.card.limits.max_body == 1000
    assert settings.gateway.busy_timeout == 2.5
    assert settings.gateway.port_map == {3516: 8080}
    assert settings.trace.enabled
    again = tmp_path / "again.toml"
    again.write_text(to_toml(settings))
    assert load(again) == settings


def test_to_toml_of_defaults_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(to_toml(Settings()))
    assert load(path) == Settings()


def test_to_toml_prints_every_section() -> None:
    from dataclasses import fields

    changed = replace(Settings(), sip=SipSettings(domain="ops.example", ppg_process=False))
    text = to_toml(changed)
    for section in fields(Settings):
        assert f"\n[{section.name}]\n" in f"\n{text}", section.name
    assert 'domain = "ops.example"' in text
    assert "ppg_process = false" in text


def test_to_toml_does_not_show_secrets() -> None:
    from openscws.config import AdminSettings, DmSettings

    settings = replace(
        Settings(),
        admin=AdminSettings(
            smpp_password="smpp-s3cret",
            pap_password="pap-s3cret",
            db="postgresql+psycopg://ras:db-s3cret@10.0.0.5:5432/ras",
        ),
        dm=DmSettings(db="postgresql+psycopg://dm@10.0.0.5/dm"),
    )
    text = to_toml(settings)
    assert "s3cret" not in text
    assert "# pap_password = (set; not shown)" in text
    assert '# db = "postgresql+psycopg://ras:(not shown)@10.0.0.5:5432/ras"' in text
    assert 'db = "postgresql+psycopg://dm@10.0.0.5/dm"' in text  # no password: shown
    at_sign = replace(settings, admin=AdminSettings(db="postgresql+psycopg://ras:p@ss@h/ras"))
    assert '# db = "postgresql+psycopg://ras:(not shown)@h/ras"' in to_toml(at_sign)


def test_every_section_is_read_from_a_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "push.toml"
    path.write_text('[admin]\ntrigger = "sip-push"\n[sip]\nproxy = "sip:127.0.0.1:5060"\n')
    settings = load(path, {"OPENSCWS_SIP_PPG_PROCESS": "false", "OPENSCWS_DM_PORT": "4443"})
    assert settings.sip.proxy == "sip:127.0.0.1:5060"
    assert settings.sip.ppg_process is False
    assert settings.dm.port == 4443


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[card]\nbogus = 1\n", "unknown setting card.bogus"),
        ("[nowhere]\n", "unknown section"),
        ('[card]\nbuffer_size = "big"\n', "card.buffer_size must be a whole number"),
        ("[card.limits]\nmax_body = -1\n", "must be positive"),
        ("[gateway]\nbusy_timeout = true\n", "must be a number"),
        ("[card\n", "d.toml"),
        ("[admin]\ndb_workers = 0\n", "admin.db_workers = 0: must be 1..64"),
    ],
)
def test_bad_files_give_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "none.toml")


# -- one way to read settings: file, then environment, then options ---------------------------


def test_environment_comes_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[admin]\ndb = "sqlite:///file.db"\nport = 4543\n')
    env = {"OPENSCWS_RAS_DB": "sqlite:///env.db", "OPENSCWS_GATEWAY_BUSY_TIMEOUT": "2.5"}
    settings = load(path, env)
    assert settings.admin.db == "sqlite:///env.db"
    assert settings.admin.port == 4543  # the file's, untouched
    assert settings.gateway.busy_timeout == 2.5
    assert load(path, {"OPENSCWS_ADMIN_DB": "sqlite:///b.db"}).admin.db == "sqlite:///b.db"
    assert load(
        None, {"OPENSCWS_CARD_PORTS": "[3516]", "OPENSCWS_CARD_TLS_PORTS": "[]"}
    ).card.ports == (3516,)
    # Variables that are no setting (the tests' own) are not read.
    assert load(None, {"OPENSCWS_REQUIRE_PEERS": "1"}) == Settings()


def test_options_come_last() -> None:
    env = {"OPENSCWS_ADMIN_PORT": "4600"}
    settings = resolve(None, env, lambda s: replace(s, admin=replace(s.admin, port=4700)))
    assert settings.admin.port == 4700
    assert resolve(None, env).admin.port == 4600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPENSCWS_ADMIN_PORT": "many"}, "OPENSCWS_ADMIN_PORT='many': not a value for admin.port"),
        ({"OPENSCWS_ADMIN_PORT": "99999"}, "admin.port = 99999: must be 0..65535"),
        ({"OPENSCWS_TRACE_ENABLED": "1"}, r"OPENSCWS_TRACE_ENABLED \(trace.enabled\) must be true"),
    ],
)
def test_bad_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(None, env)


# -- the whole configuration checked once, each problem named with what it allows --------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[admin]\nport = 99999\n", "admin.port = 99999: must be 0..65535"),
        ("[card]\nbuffer_size = 0\n", r"card.buffer_size = 0: must be 1..65535 \(ETSI TS 102 223"),
        ("[card]\nbuffer_size = 70000\n", "card.buffer_size = 70000: must be 1..65535"),
        ("[card]\nports = [3516]\n", r"card.tls_ports = \[4116\]: 4116 is not in card.ports"),
        ("[card]\nports = [0]\ntls_ports = []\n", "card.ports: 0 must be 1..65535"),
        ("[card]\nports = [3516, 3516]\ntls_ports = []\n", "named twice"),
        ("[gateway.port_map]\n3516 = 70000\n", "local port 70000 .* must be 0..65535"),
        ("[gateway.port_map]\n70000 = 8080\n", "card port 70000 must be 1..65535"),
        ("[card]\nmax_channels = 8\n", "card.max_channels = 8: must be 1..7"),
        ("[card]\ninitial_channels = 5\nmax_channels = 4\n", "card.initial_channels = 5"),
        ("[card]\nadmin_max_resource = 1048576\n", "card.admin_max_resource = 1048576: must be"),
        ('[card]\niccid = "8988211000000000001"\n', "card.iccid: .*Luhn"),
        ('[card]\nmsisdn = "call me"\n', "card.msisdn"),
        ("[gateway]\npoll_interval = 0\n", "gateway.poll_interval = 0.0: must be a number"),
        ("[admin]\nretry_max = 1\nretry_base = 5\n", "admin.retry_max = 1.0: must be at least"),
        ('[card]\ntls_profile = "old"\n', "card.tls_profile = 'old': must be modern or compat"),
        ('[card]\ntls_engine = "mbed"\n', "card.tls_engine = 'mbed': must be openssl or card"),
        ('[card]\ntls_engine = "card"\n', 'card.tls_engine = "card" needs card.tls_profile'),
        ('[card]\ntls_engine = "card"\ntls_profile = "compat"\n', None),
        ("[ca]\ndays = 0\n", "ca.days = 0: must be 1..36500"),
        ("[card]\n", None),
    ],
)
def test_ranges_and_rules(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    if message is None:
        load(path)
        return
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_a_port_map_for_a_port_the_card_never_opens_is_noted() -> None:
    settings = replace(Settings(), gateway=replace(Settings().gateway, port_map={9999: 3516}))
    assert notes(settings) == [
        "gateway.port_map maps card port 9999, which the card never opens "
        "(card.ports = [3516, 4116])"
    ]
    assert notes(Settings()) == []


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)
    bad = tmp_path / "b.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


def test_every_setting_printed_has_its_comment() -> None:
    text = to_toml(Settings())
    lines = text.splitlines()
    for i, line in enumerate(lines):
        name = line.split(" = ")[0]
        if " = " in line and not line.startswith(("#", '"')):
            assert lines[i - 1].startswith("# "), f"{name} has no comment"
    assert "# Channel buffer size asked for in OPEN CHANNEL" in text


def _numeric_settings() -> list[str]:
    from dataclasses import fields, is_dataclass

    names: list[str] = []

    def walk(obj: object, where: str) -> None:
        for f in fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            if is_dataclass(value):
                walk(value, f"{where}.{f.name}")
            elif isinstance(value, int | float) and not isinstance(value, bool):
                names.append(f"{where}.{f.name}")

    defaults = Settings()
    for section in ("card", "gateway", "trace", "ca", "admin"):
        walk(getattr(defaults, section), section)
    return names


@pytest.mark.parametrize("name", _numeric_settings())
def test_every_number_has_a_range(tmp_path: Path, name: str) -> None:
    """A setting added without a range check fails here: -1 is out of every range."""
    *tables, key = name.split(".")
    path = tmp_path / "s.toml"
    path.write_text(f"[{'.'.join(tables)}]\n{key} = -1\n")
    with pytest.raises(ConfigError, match=key):
        load(path)


def test_only_the_cli_reads_settings() -> None:
    """Every command gets its settings from openscws.cli (config.resolve: file, environment,
    options); no other module loads the file or reads OPENSCWS_* variables itself."""
    import ast

    import openscws

    root = Path(openscws.__file__).parent
    for source in root.rglob("*.py"):
        rel = source.relative_to(root).as_posix()
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "openscws.config":
                imported = {a.name for a in node.names}
                assert "load" not in imported or rel == "cli.py", f"{rel} loads settings itself"
                assert "resolve" not in imported or rel == "cli.py", rel
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith("OPENSCWS_") and rel not in ("config.py", "aio/vicc.py"):
                    raise AssertionError(f"{rel} names the variable {node.value}")


def test_admin_link_profiles(tmp_path: Path) -> None:
    assert load(None).admin.tls_profile == "modern"  # 3DES and TLS 1.0 off by default
    path = tmp_path / "openscws.toml"
    path.write_text(
        '[card]\ntls_profile = "compat"\nadmin_tls_suites = ["TLS_PSK_WITH_3DES_EDE_CBC_SHA"]\n'
        '[admin]\ntls_profile = "compat"\n'
    )
    settings = load(path)
    assert settings.admin.tls_profile == "compat"
    assert settings.card.admin_tls_suites == ("TLS_PSK_WITH_3DES_EDE_CBC_SHA",)
    path.write_text('[card]\nadmin_tls_suites = ["TLS_RSA_WITH_RC4_128_MD5"]\n')
    with pytest.raises(ConfigError, match="admin_tls_suites"):
        load(path)
    path.write_text('[admin]\ntls_profile = "legacy"\n')
    with pytest.raises(ConfigError, match=r"admin\.tls_profile"):
        load(path)


@pytest.mark.parametrize(
    ("proxy", "domain", "says"),
    [
        ("http://127.0.0.1:5060", "scws.test", "sip.proxy"),
        ("sip:127.0.0.1:70000", "scws.test", "sip.proxy"),
        ("sip:127.0.0.1:5060;transport=sctp", "scws.test", "sip.proxy"),
        ("", "scws test", "sip.domain"),
    ],
)
def test_sip_settings_are_checked(proxy: str, domain: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings(sip=SipSettings(proxy=proxy, domain=domain))
    assert Settings(sip=SipSettings(proxy="sip:127.0.0.1:5060;transport=tcp")).sip.proxy
