import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opsnb import config, signing
from opsnb.errors import ArtifactError, ConfigError


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"files": {}, "model_sha256": "ab" * 32}))
    return folder


def test_the_project_key_is_created_once_0600_in_a_0700_folder(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "signing.pem"
    monkeypatch.setenv(config.SIGNING_KEY_ENV, str(path))
    first = signing.project_key()
    again = signing.project_key()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert signing.key_id(first.public_key()) == signing.key_id(again.public_key())
    assert config.signing_key_path() == path


def test_the_default_key_lives_outside_every_run_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(config.SIGNING_KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config.signing_key_path() == tmp_path / "opsnb" / "signing-key.pem"


def test_a_signed_manifest_verifies_and_any_change_is_refused(bundle):
    key = Ed25519PrivateKey.generate()
    signing.sign_bundle(bundle, key)
    keys = {signing.key_id(key.public_key()): key.public_key()}
    assert signing.verify_signature(bundle, keys) == signing.key_id(key.public_key())
    manifest = bundle / "manifest.json"
    manifest.write_text(manifest.read_text().replace("ab", "cd", 1))
    with pytest.raises(ArtifactError, match=r"does not match its manifest.json: the manifest"):
        signing.verify_signature(bundle, keys)


def test_unsigned_and_foreign_bundles_are_refused_with_the_fix(bundle):
    mine = Ed25519PrivateKey.generate()
    keys = {signing.key_id(mine.public_key()): mine.public_key()}
    with pytest.raises(ArtifactError, match=r"is not signed .*--allow-unsigned"):
        signing.verify_signature(bundle, keys)
    signing.sign_bundle(bundle, Ed25519PrivateKey.generate())
    with pytest.raises(ArtifactError, match=r"which this server does not trust .*--trust-key"):
        signing.verify_signature(bundle, keys)
    (bundle / "manifest.sig").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest.sig of bundle .* is unreadable"):
        signing.verify_signature(bundle, keys)


def test_trusted_keys_come_from_the_project_the_environment_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv(config.SIGNING_KEY_ENV, str(tmp_path / "project.pem"))
    other, third = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (tmp_path / "other.pem").write_bytes(signing.public_pem(other))
    (tmp_path / "third.pem").write_bytes(signing.public_pem(third))
    monkeypatch.setenv(config.TRUSTED_KEYS_ENV, str(tmp_path / "other.pem"))
    assert len(signing.trusted_keys()) == 1  # no project key here: verifying creates none
    assert not (tmp_path / "project.pem").exists()
    signing.project_key()
    keys = signing.trusted_keys([tmp_path / "third.pem"])
    assert set(keys) == {
        signing.key_id(k.public_key()) for k in (signing.project_key(), other, third)
    }
    assert set(signing.trusted_keys(project=False)) == {signing.key_id(other.public_key())}


def test_unusable_key_files_are_named(tmp_path, monkeypatch):
    (tmp_path / "bad.pem").write_text("nope")
    with pytest.raises(ConfigError, match=r"trusted key .*bad.pem cannot be read as a PEM"):
        signing.load_public_key(tmp_path / "bad.pem")
    monkeypatch.setenv(config.SIGNING_KEY_ENV, str(tmp_path / "bad.pem"))
    with pytest.raises(ConfigError, match=r"is not an unencrypted PEM private key"):
        signing.project_key()
