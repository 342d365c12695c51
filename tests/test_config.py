from pathlib import Path

import pytest

from openscws.config import Settings, load, to_toml
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
        "[card]\nbuffer_size = 4096\nports = [3516]\n[card.limits]\nmax_body = 1000\n"
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[card]\nbogus = 1\n", "unknown setting card.bogus"),
        ("[nowhere]\n", "unknown section"),
        ('[card]\nbuffer_size = "big"\n', "card.buffer_size must be a whole number"),
        ("[card.limits]\nmax_body = -1\n", "must be positive"),
        ("[gateway]\nbusy_timeout = true\n", "must be a number"),
        ("[card\n", "d.toml"),
        ("[admin]\ndb_workers = 0\n", "admin.db_workers must be 1..64"),
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
