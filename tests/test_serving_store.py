"""The model store, trust, admin credentials, the workers' instruction file, the front door."""

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opsnb import signing
from opsnb.errors import ArtifactError, ConfigError, RequestError
from opsnb.serving.admin import Access, host_name
from opsnb.serving.control import Control
from opsnb.serving.frontdoor import check_headers, read_body
from opsnb.serving.store import ModelStore, Trust, escape


def make_bundle(folder, files=None):
    folder.mkdir(parents=True)
    manifest = {"files": files or {"model.so": "0" * 64}, "model_sha256": "a" * 64}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_versions_resolve_inside_the_store_and_nothing_outside(tmp_path):
    store = tmp_path / "runs"
    make_bundle(store / "r1" / "bundle")
    make_bundle(store / "b2")
    make_bundle(tmp_path / "elsewhere")
    (store / "latest").symlink_to(store / "r1")
    (store / "escape").symlink_to(tmp_path / "elsewhere")
    (store / "empty").mkdir()
    models = ModelStore.serving(store / "latest")
    assert (models.root, models.default) == (store, "latest")
    assert models.resolve() == store / "r1" / "bundle"
    assert models.resolve("b2") == store / "b2"
    for name in ("../elsewhere", str(tmp_path / "elsewhere"), "a/b", "..", "", "x\ny"):
        with pytest.raises(ArtifactError, match=r"is not a name in the model store"):
            models.resolve(name)
    with pytest.raises(ArtifactError, match=r"leads outside the model store"):
        models.resolve("escape")
    with pytest.raises(ArtifactError, match=r"'empty' in .* is neither a run folder"):
        models.resolve("empty")


def test_an_explicit_store_takes_a_name_or_a_path_inside_it(tmp_path):
    make_bundle(tmp_path / "s" / "v1")
    assert ModelStore.serving("v1", str(tmp_path / "s")).default == "v1"
    assert ModelStore.serving(tmp_path / "s" / "v1", str(tmp_path / "s")).default == "v1"
    with pytest.raises(ConfigError, match=r"is not a version in the model store"):
        ModelStore.serving(tmp_path / "v1", str(tmp_path / "s"))


def test_trust_refuses_manifests_listing_files_outside_the_bundle_without_hashing(tmp_path):
    bundle = make_bundle(tmp_path / "b", {"../../../../etc/passwd": "0" * 64})
    with pytest.raises(ArtifactError, match=r"lists '../../../../etc/passwd', which is not a fi"):
        Trust(allow_unsigned=True).check(bundle)
    key = Ed25519PrivateKey.generate()
    signing.sign_bundle(bundle, key)
    trust = Trust({signing.key_id(key.public_key()): key.public_key()})
    with pytest.raises(ArtifactError, match=r"which is not a file of the bundle folder") as err:
        trust.check(bundle)
    assert "sha256" not in str(err.value)


def test_log_escaping_keeps_one_line():
    assert escape("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert len(escape("x" * 500, 20)) == 20


def scope(headers):
    return {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


def test_admin_access_needs_the_token_and_a_host_of_ours():
    access = Access("s3cret", None, ["127.0.0.1", "localhost", "::1"])
    good = scope({"authorization": "Bearer s3cret", "host": "127.0.0.1:8000"})
    assert access.admin_refusal(good) is None
    assert access.admin_refusal(scope({"host": "localhost"}))[0] == 401
    assert (
        access.admin_refusal(scope({"authorization": "Bearer nope", "host": "[::1]:80"}))[0] == 401
    )
    assert access.admin_refusal(scope({"authorization": "Bearer s3cret", "host": "evil"}))[0] == (
        403
    )
    assert Access(None, None, []).admin_refusal(good)[0] == 404
    assert host_name("[::1]:8000") == "::1"
    assert host_name("Example.COM:80") == "example.com"


def test_feedback_is_open_without_tokens_and_needs_one_with_them():
    anyone = scope({})
    assert Access(None, None, []).may_give_feedback(anyone)
    both = Access("adm", "fb", [])
    assert not both.may_give_feedback(anyone)
    assert both.may_give_feedback(scope({"authorization": "Bearer fb"}))
    assert both.may_give_feedback(scope({"authorization": "bearer adm"}))
    assert not both.is_admin(scope({"authorization": "Bearer fb"}))


def test_workers_follow_the_published_instruction(tmp_path):
    shared, alone = Control(tmp_path), Control(None)
    assert shared.read() == (0, None)
    assert shared.changed() is False
    assert shared.publish("v2") == 1
    assert shared.changed() is True
    assert shared.changed() is False  # nothing new since
    assert shared.publish(None) == 2
    assert shared.read() == (2, None)
    assert (alone.shared, alone.publish("x"), alone.read(), alone.changed()) == (
        False,
        0,
        (0, None),
        False,
    )


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"content-type": "text/plain"}, 415, r"content-type 'text/plain' is not accepted"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, 415, r"'gzip' is no"),
        ({"content-type": "application/json", "content-length": "x1"}, 400, r"not a byte count"),
        ({"content-type": "application/json", "content-length": "99"}, 413, r"exceeds the lim"),
    ],
)
def test_headers_alone_refuse_a_post(headers, status, message):
    with pytest.raises(RequestError, match=message) as caught:
        check_headers(scope(headers), max_body=10)
    assert caught.value.status == status


def test_a_body_is_read_whole_refused_when_slow_gzip_or_large_and_none_on_disconnect():
    def receiver(*messages, delay=0.0):
        queue = list(messages)

        async def receive():
            await asyncio.sleep(delay)
            return queue.pop(0)

        return receive

    def run(receive, limit=100, timeout_s=1.0):
        return asyncio.run(read_body(receive, limit=limit, timeout_s=timeout_s))

    part = {"type": "http.request", "body": b"[1,", "more_body": True}
    last = {"type": "http.request", "body": b"2]", "more_body": False}
    assert run(receiver(part, last)) == b"[1,2]"
    assert run(receiver(part, {"type": "http.disconnect"})) is None
    with pytest.raises(RequestError, match=r"not received within 0.05 s \(3 bytes so far\)"):
        run(receiver(part, part, part, delay=0.03), timeout_s=0.05)
    with pytest.raises(RequestError, match=r"exceeds the limit of 4 bytes"):
        run(receiver(part, last), limit=4)
    gz = {"type": "http.request", "body": b"\x1f\x8b\x08\x00", "more_body": False}
    with pytest.raises(RequestError, match=r"gzip-compressed \(it starts with the bytes 1f 8b\)"):
        run(receiver(gz))
