"""The artifact encryption format: age v1 written, the earlier format still read, interoperability with ``age``."""

from __future__ import annotations

import io
import os
import struct

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import crypto
from tests.support import agecli

KEY = "correct horse battery staple 42"


def encrypt(data, key=KEY):
    out = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(data), out.write, key)
    return out.getvalue()


def decrypt(blob, key=KEY):
    out = io.BytesIO()
    crypto.decrypt_stream(io.BytesIO(blob), out.write, key)
    return out.getvalue()


def legacy_encrypt(data, key, chunk=1000):
    """The earlier format, written as the collection wrote it before age (AES-256-GCM, 4-byte chunk lengths)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    salt, prefix = os.urandom(16), os.urandom(8)
    header = crypto.MAGIC + crypto.key_id(key) + salt + prefix + struct.pack(">I", chunk)
    aead = AESGCM(crypto._derive(key, salt))  # pylint: disable=protected-access
    blocks = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    out = header
    for index, block in enumerate(blocks):
        sealed = aead.encrypt(prefix + struct.pack(">I", index), block,
                              header + struct.pack(">IB", index, 1 if index == len(blocks) - 1 else 0))
        out += struct.pack(">I", len(sealed)) + sealed
    return out


@pytest.mark.parametrize("size", [0, 1, crypto.AGE_CHUNK - 1, crypto.AGE_CHUNK, crypto.AGE_CHUNK + 1,
                                  3 * crypto.AGE_CHUNK])
def test_age_round_trip_any_size(size):
    data = os.urandom(size)
    blob = encrypt(data)
    assert blob.startswith(crypto.AGE_MAGIC + b"-> scrypt ")
    assert ("%d\n" % crypto.SCRYPT_LOG_N).encode() in blob.split(b"\n---")[0]
    assert decrypt(blob) == data


def test_fresh_salt_and_file_key_per_file():
    one, two = encrypt(b"same"), encrypt(b"same")
    assert one.split(b"\n")[1] != two.split(b"\n")[1]  # the scrypt stanza (salt)
    assert one != two


def test_wrong_key_is_named_before_any_data(tmp_path):
    path = tmp_path / "a.sql.gz.enc"
    path.write_bytes(encrypt(b"data"))
    assert crypto.is_encrypted(str(path))
    assert crypto.check_key(str(path), KEY) == crypto.key_id(KEY).hex()
    assert crypto.file_key_id(str(path), ["other", KEY]) == crypto.key_id(KEY).hex()
    assert crypto.file_key_id(str(path), ["other"]) is None
    with pytest.raises(crypto.CryptoError, match="encrypted with another key"):
        crypto.check_key(str(path), "not the key")
    written = []
    with pytest.raises(crypto.CryptoError, match="encrypted with another key"):
        crypto.decrypt_stream(io.BytesIO(path.read_bytes()), written.append, "not the key")
    assert not written


@pytest.mark.parametrize("damage", ["truncate", "flip", "extend", "drop-last-chunk", "header"])
def test_damage_is_detected(damage):
    blob = bytearray(encrypt(os.urandom(2 * crypto.AGE_CHUNK + 10)))
    if damage == "truncate":
        blob = blob[:-1]
    elif damage == "flip":
        blob[-100] ^= 1
    elif damage == "extend":
        blob += b"\x00" * 17
    elif damage == "drop-last-chunk":
        blob = blob[:-(10 + 16)]
    else:
        at = blob.index(b"-> scrypt ") + len(b"-> scrypt ")
        blob[at] = ord("A") if blob[at] != ord("A") else ord("B")
    with pytest.raises(crypto.CryptoError):
        decrypt(bytes(blob))


def test_earlier_format_still_decrypts(tmp_path):
    data = os.urandom(4321)
    blob = legacy_encrypt(data, KEY)
    path = tmp_path / "old.sql.gz.enc"
    path.write_bytes(blob)
    assert crypto.is_encrypted(str(path))
    assert crypto.check_key(str(path), KEY) == crypto.key_id(KEY).hex()
    assert crypto.file_key_id(str(path)) == crypto.key_id(KEY).hex()
    with pytest.raises(crypto.CryptoError, match="with another key"):
        crypto.check_key(str(path), "not the key")
    assert decrypt(blob) == data
    digests, size, dummy = crypto.decrypt_file(str(path), str(tmp_path / "old.sql.gz"), KEY)
    assert (tmp_path / "old.sql.gz").read_bytes() == data and size == len(data)


def test_encryptor_matches_encrypt_stream_format():
    out = io.BytesIO()
    encryptor = crypto.Encryptor(KEY, out.write)
    for part in (b"a" * 70000, b"b" * 3, b"c" * 65536):
        encryptor.write(part)
    encryptor.close()
    assert decrypt(out.getvalue()) == b"a" * 70000 + b"b" * 3 + b"c" * 65536


def test_manifest_entry_names_the_format_and_key_id():
    entry = crypto.manifest_entry(KEY, "a.sql.gz", 3, dict(sha256="s", md5="m"))
    assert entry["key_id"] == crypto.key_id(KEY).hex() and entry["format"] == "age-encryption.org/v1"
    assert entry["chunk_size"] == crypto.AGE_CHUNK


needs_age = pytest.mark.skipif(agecli.AGE is None, reason="Debian's age package is not installed (scripts/setup.sh)")


@needs_age
def test_our_file_opens_with_the_age_tool(tmp_path):
    data = os.urandom(crypto.AGE_CHUNK * 2 + 5)
    (tmp_path / "a.enc").write_bytes(encrypt(data))
    code, screen, dummy, stderr = agecli.run_with_passphrase(
        [agecli.AGE, "-d", "-o", "a.out", "a.enc"], KEY, cwd=str(tmp_path), timeout=60)
    assert code == 0, stderr + screen
    assert (tmp_path / "a.out").read_bytes() == data
    code, screen, dummy, stderr = agecli.run_with_passphrase(
        [agecli.AGE, "-d", "-o", "b.out", "a.enc"], "not the key", cwd=str(tmp_path), timeout=60)
    assert code != 0 and "incorrect passphrase" in stderr


@needs_age
def test_a_file_of_the_age_tool_opens_here(tmp_path):
    data = os.urandom(100000)
    (tmp_path / "plain").write_bytes(data)
    code, screen, dummy, stderr = agecli.run_with_passphrase(
        [agecli.AGE, "-p", "-o", "plain.enc", "plain"], KEY, cwd=str(tmp_path), timeout=60)
    assert code == 0, stderr + screen
    path = tmp_path / "plain.enc"
    assert crypto.is_encrypted(str(path)) and b"-> scrypt " in path.read_bytes()[:200]
    assert crypto.check_key(str(path), KEY) == crypto.key_id(KEY).hex()
    assert decrypt(path.read_bytes()) == data
