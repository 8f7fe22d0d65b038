"""voxproof.credentials: every output carries a signed C2PA manifest naming its record, the
manifest store is kept with the record, and verify tells the four cases apart. Real voice, real
mark, c2pa's own Reader, real ffmpeg and soundfile for the attacks."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import threading

import c2pa
import numpy as np
import pytest
import soundfile
from cryptography import x509
from fakes import StaticKeys
from voxproof import __version__, audio
from voxproof.credentials.core import Credentials, CredentialsReport
from voxproof.credentials.identity import LocalIdentity
from voxproof.credentials.manifest import (
    ALGORITHM,
    DIGITAL_SOURCE_TYPE,
    MIME_TYPES,
    binding_value,
    record_id_from_binding,
)
from voxproof.credentials.reader import CredentialsCheck, read_embedded, read_stored
from voxproof.credentials.signer import CredentialSigner
from voxproof.deadline import Deadline
from voxproof.keyring import KeyRing
from voxproof.service import Caller, Service, UnknownFormat
from voxproof.watermark import WatermarkKey

TEXT = "The provenance of this sentence is on record."
CALLER = Caller("test:carol-the-caller", "cli", request_id="req-c2pa")
KEY = WatermarkKey.from_hex("c3" * 32)


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> LocalIdentity:
    return LocalIdentity.load_or_create(tmp_path_factory.mktemp("state") / "c2pa")


def _credentials(identity: LocalIdentity, *, trust: bool = True) -> Credentials:
    return Credentials(lambda: CredentialSigner.local(identity),
                       lambda: identity.ca_pem.decode() if trust else None, version=__version__)


@pytest.fixture
def service(default_voice, registry, identity):
    return Service(default_voice, StaticKeys(KeyRing(KEY)), registry, max_chars=500,
                   credentials=_credentials(identity))


def _reader(data: bytes, mime: str, anchors: bytes | None) -> c2pa.Reader:
    settings: dict = {"verify": {"verify_trust": True}}
    if anchors:
        settings["trust"] = {"trust_anchors": anchors.decode()}
    return c2pa.Reader(mime, io.BytesIO(data), context=c2pa.Context(c2pa.Settings.from_dict(settings)))


# --- keys ---------------------------------------------------------------------------------------


def test_local_identity_is_a_ca_and_an_es256_leaf_with_a_0600_key(tmp_path):
    folder = tmp_path / "state" / "c2pa"
    made = LocalIdentity.load_or_create(folder)
    assert stat.S_IMODE(os.stat(folder / "signer.key").st_mode) == 0o600
    assert not any("PRIVATE" in p.read_text() for p in folder.iterdir() if p.name != "signer.key")
    ca = x509.load_pem_x509_certificate(made.ca_pem)
    leaf = x509.load_pem_x509_certificates(made.chain_pem)[0]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    leaf.verify_directly_issued_by(ca)
    again = LocalIdentity.load_or_create(folder)  # the second use reads, never re-creates
    assert again.chain_pem == made.chain_pem and again.key_pem == made.key_pem
    assert made.describe()["signer"]["key_mode"] == "0600"


def test_concurrent_first_uses_agree_on_one_identity(tmp_path):
    folder = tmp_path / "c2pa"
    seen: list[bytes] = []
    threads = [threading.Thread(target=lambda: seen.append(
        LocalIdentity.load_or_create(folder).chain_pem)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2pa"]  # no temporary folder left


def test_a_ca_certificate_used_directly_is_refused_by_c2pa(identity):
    from cryptography.hazmat.primitives import serialization
    from voxproof.credentials.identity import new_ca, validity
    from voxproof.credentials.signer import SigningFailed

    ca, ca_key = new_ca("a CA", "test", *validity())
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    as_signer = LocalIdentity(identity.folder, ca_pem, key_pem, ca_pem)
    wav = audio.encode(np.zeros(8000, np.float32), 8000)
    with pytest.raises(SigningFailed):
        _credentials(as_signer).sign(wav, "wav", record_id=1, key_id="k", voice="v",
                                     model_manifest_sha256="0" * 64)


def test_binding_value_round_trips_the_40_bit_record_id():
    for rid in (0, 1, 0x0123456789, 2**40 - 1):
        assert record_id_from_binding(binding_value(rid)) == rid
    assert record_id_from_binding("not base64!") is None
    assert record_id_from_binding("AAAA") is None  # 3 bytes: not a record id


# --- every output is signed ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "flac"])
def test_speech_carries_a_manifest_c2pas_reader_validates(service, registry, identity, fmt):
    result = service.speak(TEXT, CALLER, Deadline.after(60), fmt=fmt)
    assert result.format == fmt and result.manifest_store
    trusted = _reader(result.audio, MIME_TYPES[fmt], identity.ca_pem)
    assert trusted.get_validation_state() == "Trusted"
    untrusted = _reader(result.audio, MIME_TYPES[fmt], None)
    assert untrusted.get_validation_state() == "Valid"
    codes = [f["code"] for f in untrusted.get_validation_results()["activeManifest"]["failure"]]
    assert codes == ["signingCredential.untrusted"]
    manifest = trusted.get_active_manifest()
    by_label = {a["label"]: a["data"] for a in manifest["assertions"]}
    action = by_label["c2pa.actions.v2"]["actions"][0]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert action["softwareAgent"] == {"name": "voxproof", "version": __version__}
    binding = by_label["c2pa.soft-binding"]
    assert binding["alg"] == ALGORITHM
    assert record_id_from_binding(binding["blocks"][0]["value"]) == result.record.record_id
    ours = by_label["org.voxproof.provenance"]
    assert ours == {"record_id": result.record.record_id_hex, "key_id": KEY.key_id,
                    "voice": result.record.voice,
                    "model_manifest_sha256": result.record.model_manifest_sha256}
    # Never the text, never the caller: not in the manifest, not in the stored bytes.
    dumped = json.dumps(manifest) + trusted.json()
    for secret in (TEXT, "provenance of this sentence", CALLER.identity, "req-c2pa"):
        assert secret not in dumped
        assert secret.encode() not in result.audio and secret.encode() not in result.manifest_store
    # The store is kept with the record, exactly as embedded.
    assert registry.get_manifest(result.record.record_id) == result.manifest_store
    # The file decodes, and verify finds its record and its manifest.
    decoded = audio.decode(result.audio)
    assert decoded.family == {"m4a": "mp4"}.get(fmt, fmt)
    assert abs(decoded.duration_s - result.duration_s) < 0.1
    report = service.verify(result.audio, CALLER)
    assert report.verdict == "recorded" and report.record == result.record
    assert report.credentials.status == "manifest_and_mark"
    assert report.credentials.validation == "trusted"


def test_an_unknown_format_is_refused_before_any_work(service):
    with pytest.raises(UnknownFormat):
        service.speak(TEXT, CALLER, Deadline.after(60), fmt="ogg")


# --- verify reads both ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed(default_voice, tmp_path_factory, identity):
    from voxproof.provenance import SQLiteRegistry

    registry = SQLiteRegistry(tmp_path_factory.mktemp("reg") / "records.sqlite3")
    svc = Service(default_voice, StaticKeys(KeyRing(KEY)), registry, max_chars=500,
                  credentials=_credentials(identity))
    return svc, svc.speak(TEXT, CALLER, Deadline.after(60))


def test_valid_manifest_and_mark_name_the_same_record(signed):
    svc, result = signed
    report = svc.verify(result.audio, CALLER)
    creds = report.credentials
    assert report.verdict == "recorded"
    assert creds.status == "manifest_and_mark" and creds.validation == "trusted"
    assert creds.embedded.record_id == report.detection.record_id == result.record.record_id
    assert creds.source == "embedded" and creds.stored is None
    public = report.public_dict()["credentials"]
    assert public["status"] == "manifest_and_mark" and "provenance" not in public["embedded"]
    assert report.to_dict()["credentials"]["embedded"]["provenance"]["key_id"] == KEY.key_id


def test_untrusted_without_the_local_ca(signed, identity):
    svc, result = signed
    untrusting = Service(svc.voice, svc.keys, svc.registry, max_chars=500,
                         credentials=_credentials(identity, trust=False))
    creds = untrusting.verify(result.audio, CALLER).credentials
    assert creds.status == "manifest_and_mark" and creds.validation == "valid_untrusted"
    assert creds.embedded.failures == ("signingCredential.untrusted",)


def test_stripped_manifest_is_recovered_from_the_registry(signed, tmp_path):
    svc, result = signed
    samples, rate = soundfile.read(io.BytesIO(result.audio), dtype="int16")
    stripped = io.BytesIO()
    soundfile.write(stripped, samples, rate, format="WAV", subtype="PCM_16")
    assert b"c2pa" not in stripped.getvalue() and b"jumb" not in stripped.getvalue()
    report = svc.verify(stripped.getvalue(), CALLER)
    creds = report.credentials
    assert report.verdict == "recorded"
    assert creds.status == "recovered" and creds.source == "registry"
    assert creds.embedded.state == "absent"
    assert creds.stored.state == "trusted" and creds.stored.record_id == result.record.record_id
    assert creds.manifest_store == result.manifest_store
    assert "not that these bytes are the ones that were signed" in creds.summary


def test_mp3_64k_reencode_is_recovered_from_the_registry(signed, tmp_path):
    svc, result = signed
    src, out = tmp_path / "signed.wav", tmp_path / "copy.mp3"
    src.write_bytes(result.audio)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-map_metadata", "-1",
                    "-b:a", "64k", str(out)], check=True)
    report = svc.verify(out.read_bytes(), CALLER, declared="audio/mpeg")
    assert report.detection.record_id == result.record.record_id
    assert report.credentials.status == "recovered"
    assert report.credentials.stored.record_id == result.record.record_id


def test_one_edited_sample_invalidates_the_manifest_but_the_mark_names_the_record(signed):
    svc, result = signed
    data = bytearray(result.audio)
    sample = data.find(b"data") + 8 + 2 * 20_000  # a sample well inside the speech
    data[sample] ^= 0x01
    report = svc.verify(bytes(data), CALLER)
    creds = report.credentials
    assert report.detection.record_id == result.record.record_id
    assert creds.status == "manifest_invalid" and creds.validation == "invalid"
    assert "assertion.dataHash.mismatch" in creds.embedded.failures
    assert creds.stored.state == "trusted"  # the kept manifest still names the record


def test_neither_manifest_nor_mark(signed):
    svc, _ = signed
    noise = np.random.default_rng(7).normal(0, 0.1, 22050 * 3).astype(np.float32)
    report = svc.verify(audio.encode(noise, 22050), CALLER)
    assert report.verdict == "not_found"
    assert report.credentials.status == "none" and report.credentials.validation is None


def test_assess_tells_the_rarer_cases_apart():
    valid = CredentialsCheck("trusted", record_id=5)
    absent = CredentialsCheck("absent")
    nothing = lambda: None

    def no_store(_: bytes) -> CredentialsCheck:
        raise AssertionError("not looked up")

    assert CredentialsReport.assess(valid, None, nothing, no_store).status == "manifest_only"
    assert CredentialsReport.assess(valid, 6, nothing, no_store).status == "mismatch"
    assert CredentialsReport.assess(absent, 6, nothing, no_store).status == "mark_only"


def test_a_stored_store_read_alone_reports_signature_and_trust(signed, identity):
    _, result = signed
    alone = read_stored(result.manifest_store, anchors_pem=identity.ca_pem.decode())
    assert alone.state == "trusted" and alone.failures == ()
    tampered = bytearray(result.manifest_store)
    tampered[-10] ^= 0xFF  # inside the signature
    assert read_stored(bytes(tampered), anchors_pem=identity.ca_pem.decode()).state == "invalid"
    assert read_embedded(result.audio, "audio/wav", anchors_pem=None).state == "valid_untrusted"


def test_reading_an_upload_never_fetches_a_remote_manifest(identity):
    """An upload can point at a remote manifest (an SSRF lever); c2pa's default context fetches
    it, voxproof's never does."""
    import http.server

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            c2pa.C2paSigningAlg.ES256, identity.chain_pem, identity.key_pem, None))
        from voxproof.credentials.manifest import manifest_definition

        builder = c2pa.Builder(manifest_definition(record_id=1, key_id="k", voice="v",
                                                   model_manifest_sha256="0" * 64, fmt="wav",
                                                   version="0"))
        builder.set_no_embed()
        builder.set_remote_url(f"http://127.0.0.1:{server.server_port}/m.c2pa")
        out = io.BytesIO()
        builder.sign(signer, "audio/wav", io.BytesIO(audio.encode(np.zeros(8000, np.float32),
                                                                    8000)), out)
        check = read_embedded(out.getvalue(), "audio/wav", anchors_pem=None)
        assert check.state == "absent" and check.failures == ("c2pa.error.Remote",)
        assert hits == []
        with pytest.raises(c2pa.C2paError):  # the default context does fetch: the lever is real
            c2pa.Reader("audio/wav", io.BytesIO(out.getvalue()))
        assert hits == ["/m.c2pa"]
    finally:
        server.shutdown()
