# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client-side encryption of backup artifacts: the age v1 format with a passphrase, streamed.

New artifacts (``.enc``) are written in the standard age v1 format (https://age-encryption.org/v1) with one
scrypt passphrase stanza, so an operator can open them with Debian's ``age`` package and nothing of this
collection (``age -d -o out file.enc``, the passphrase typed at the prompt)::

    age-encryption.org/v1
    -> scrypt <base64 salt (16 bytes)> <log2 N>
    <base64 of the 16-byte file key sealed with ChaCha20-Poly1305, key scrypt(passphrase), nonce 0>
    --- <base64 HMAC-SHA256 of the header, key HKDF(file key, info "header")>
    nonce (16 bytes) | chunk 0 | chunk 1 | ...

Each 64 KiB chunk is sealed with ChaCha20-Poly1305 under HKDF(file key, salt nonce, info "payload"), its nonce
an 11-byte counter and a last-chunk flag: chunks cannot be reordered, dropped, or the file truncated or extended
without the decryption failing. Every file has a fresh random salt and file key. A passphrase is proven right by
unwrapping the file key (one scrypt at the file's work factor, :data:`SCRYPT_LOG_N` for the files written
here); the manifests keep the passphrase's public :func:`key_id`.

Reading also accepts the collection's earlier format, so older sets stay readable and can be re-keyed
(re-keying writes age)::

    header  = b"ATLASIA-DR-ENC1\\n" | key_id (16 bytes) | salt (16 bytes) | nonce prefix (8 bytes)
              | chunk size (4 bytes, big endian)
    chunk i = length (4 bytes, big endian) | AES-GCM(ciphertext + 16-byte tag)

with the nonce ``nonce prefix | i`` (4 bytes) and the header, ``i`` and a final-chunk flag as associated data.
Memory is one or two chunks, whatever the file size.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import struct

from ansible_collections.atlasia.dr.plugins.module_utils import artifact

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc
    InvalidTag = ValueError

# The earlier format (read and re-keyed, no longer written).
MAGIC = b"ATLASIA-DR-ENC1\n"
HEADER_LEN = len(MAGIC) + 16 + 16 + 8 + 4
DEFAULT_CHUNK = 4 * 1024 * 1024
_KDF_N = 2 ** 14

# age v1.
AGE_MAGIC = b"age-encryption.org/v1\n"
AGE_CHUNK = 64 * 1024
ALGORITHM = "age-v1-scrypt-chacha20poly1305"
LEGACY_ALGORITHM = "AES-256-GCM"
EXTENSION = ".enc"
# scrypt work factor (N = 2 ** SCRYPT_LOG_N, r=8, p=1) of the files written here, paid once per file written
# and once per file checked or decrypted (cached per file within a run). Measured with hashlib.scrypt on the
# 2-CPU test machine (shared, so slower than an idle host): 14 -> 0.39 s, 15 -> 0.60 s, 16 -> 1.06 s,
# 17 -> 2.5 s, 18 (age's default, 256 MiB) -> 4.3 s. 15 (32 MiB) keeps the suites, which check sets thousands
# of times, within reach; a higher factor would not make a passphrase harder to guess, since every manifest
# publishes its key id, scrypt at 2 ** 14 with a fixed salt. Files with a factor up to SCRYPT_MAX_LOG_N (age's
# tool writes 18) are read; above it hashlib's memory limit (2 GiB) is reached.
SCRYPT_LOG_N = 15
SCRYPT_MAX_LOG_N = 20
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_LINE_MAX = 1024
_COLUMNS = 64


class CryptoError(Exception):
    """Wrong key, damaged or truncated ciphertext, or not an encrypted artifact."""


def key_id(passphrase):
    """Public identifier of a passphrase, recorded in manifests.

    scrypt with a fixed salt: stable for one passphrase, and as costly to brute-force as the earlier format's
    file keys.
    """
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=b"atlasia.dr key id", n=_KDF_N, r=8, p=1, dklen=16)


def _derive(passphrase, salt):
    return Scrypt(salt=salt, length=32, n=_KDF_N, r=8, p=1).derive(passphrase.encode("utf-8"))


def _b64encode(data):
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text):
    """Canonical unpadded base64 (age's encoding), or :class:`CryptoError`."""
    if not re.match(rb"^[A-Za-z0-9+/]*$", text) or len(text) % 4 == 1:
        raise CryptoError("the age header holds invalid base64 (damaged)")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("the age header holds invalid base64 (damaged)")
    if _b64encode(data) != text:
        raise CryptoError("the age header holds non-canonical base64 (damaged)")
    return data


def _hkdf(key, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


@functools.lru_cache(maxsize=32)
def _scrypt_wrap_key(passphrase, salt, log_n):
    """The key that seals one file's file key (cached: a file is often checked, then decrypted, in one run)."""
    n = 2 ** log_n
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=_SCRYPT_LABEL + salt, n=n, r=8, p=1,
                          maxmem=130 * 8 * n + 2 ** 20, dklen=32)


def _read_exact(source, size):
    data = b""
    while len(data) < size:
        block = source.read(size - len(data))
        if not block:
            break
        data += block
    return data


def _read_line(source, prefix=b""):
    """One header line (without its newline), read byte by byte so nothing of the payload is consumed."""
    line = bytearray(prefix)
    while True:
        if prefix.endswith(b"\n"):
            return bytes(line[:-1])
        byte = source.read(1)
        if not byte:
            raise CryptoError("the age header ends early (truncated)")
        if byte == b"\n":
            return bytes(line)
        line += byte
        if len(line) > _LINE_MAX:
            raise CryptoError("the age header has an overlong line (damaged or not an age file)")


class _AgeHeader(object):
    """The parsed header of an age file with one scrypt stanza."""

    def __init__(self, salt, log_n, body, mac, mac_input):
        self.salt, self.log_n, self.body, self.mac, self.mac_input = salt, log_n, body, mac, mac_input

    def file_key(self, passphrase):
        """The file key, or :class:`CryptoError` when ``passphrase`` does not unwrap it (or the header was altered)."""
        wrap = _scrypt_wrap_key(passphrase, self.salt, self.log_n)
        try:
            key = ChaCha20Poly1305(wrap).decrypt(b"\x00" * 12, self.body, None)
        except InvalidTag:
            raise CryptoError("encrypted with another key (the given key, key id %s, does not unwrap the file key): "
                              "use the key this set was made with (dr_encryption_key)" % key_id(passphrase).hex())
        expected = hmac.new(_hkdf(key, b"", b"header"), self.mac_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, self.mac):
            raise CryptoError("the age header fails authentication: the file is damaged or was altered")
        return key


def _read_age_header(source, start):
    """Parse an age header; ``start`` are the bytes already read (the beginning of the magic line)."""
    first = _read_line(source, start)
    if first + b"\n" != AGE_MAGIC:
        raise CryptoError("not an age v1 file (bad first line)")
    mac_input = bytearray(AGE_MAGIC)
    stanzas = []
    while True:
        line = _read_line(source)
        if line.startswith(b"---"):
            if not line.startswith(b"--- "):
                raise CryptoError("the age header has a malformed MAC line (damaged)")
            mac_input += b"---"
            mac = _b64decode(line[4:])
            break
        if not line.startswith(b"-> "):
            raise CryptoError("the age header has a malformed stanza (damaged)")
        mac_input += line + b"\n"
        args = line[3:].split(b" ")
        body = bytearray()
        while True:
            part = _read_line(source)
            mac_input += part + b"\n"
            if len(part) > _COLUMNS:
                raise CryptoError("the age header has an overlong body line (damaged)")
            body += _b64decode(part)
            if len(part) < _COLUMNS:
                break
        stanzas.append((args, bytes(body)))
    if len(mac) != 32:
        raise CryptoError("the age header's MAC has the wrong length (damaged)")
    scrypt = [s for s in stanzas if s[0] and s[0][0] == b"scrypt"]
    if not scrypt:
        raise CryptoError("this age file is encrypted to a public key (recipient types %s), not a passphrase: "
                          "it was not made by this collection" % ", ".join(
                              sorted(set(s[0][0].decode("ascii", "replace") for s in stanzas if s[0]))))
    if len(stanzas) != 1:
        raise CryptoError("an age scrypt stanza must be the only one of its header (damaged or altered)")
    args, body = scrypt[0]
    if len(args) != 3 or not re.match(rb"^[1-9][0-9]?$", args[2]):
        raise CryptoError("the age scrypt stanza is malformed (damaged)")
    salt, log_n = _b64decode(args[1]), int(args[2])
    if len(salt) != 16 or len(body) != 32:
        raise CryptoError("the age scrypt stanza is malformed (damaged)")
    if log_n > SCRYPT_MAX_LOG_N:
        raise CryptoError("the age file asks for scrypt work factor %d, above the %d this reader allows (it would "
                          "need %d MiB of memory); decrypt it with the age tool" % (
                              log_n, SCRYPT_MAX_LOG_N, 2 ** log_n * 1024 // 2 ** 20))
    return _AgeHeader(salt, log_n, body, mac, bytes(mac_input))


def _open_header(source):
    """``("age", header)`` or ``("legacy", (header, kid, salt, prefix, chunk_size))`` from the first bytes."""
    start = _read_exact(source, len(MAGIC))
    if start == MAGIC:
        rest = _read_exact(source, HEADER_LEN - len(MAGIC))
        if len(rest) < HEADER_LEN - len(MAGIC):
            raise CryptoError("not an atlasia.dr encrypted artifact (bad or missing header)")
        return "legacy", _parse_legacy(start + rest)
    if start and AGE_MAGIC.startswith(start):
        return "age", _read_age_header(source, start)
    raise CryptoError("not an atlasia.dr encrypted artifact (neither an age file nor the earlier format)")


def _parse_legacy(header):
    offset = len(MAGIC)
    kid = header[offset:offset + 16]
    salt = header[offset + 16:offset + 32]
    prefix = header[offset + 32:offset + 40]
    chunk_size = struct.unpack(">I", header[offset + 40:offset + 44])[0]
    return header, kid, salt, prefix, chunk_size


def read_header(handle):
    """The header of a file in the earlier format: ``(header, key id, salt, nonce prefix, chunk size)``."""
    header = handle.read(HEADER_LEN)
    if len(header) < HEADER_LEN or not header.startswith(MAGIC):
        raise CryptoError("not an atlasia.dr encrypted artifact in the earlier format (bad or missing header)")
    return _parse_legacy(header)


def is_encrypted(path):
    """True when ``path`` starts like an encrypted artifact (age v1, or the earlier format)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(AGE_MAGIC))
    except (OSError, IsADirectoryError):
        return False
    return start == AGE_MAGIC or start.startswith(MAGIC)


def _aad(header, index, final):
    return header + struct.pack(">IB", index, 1 if final else 0)


def _chunk_nonce(index, final):
    if index >= 2 ** 88:  # pragma: no cover - 16 YiB
        raise CryptoError("the payload is too long for one age file")
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class Encryptor(object):
    """Incremental encryption: :meth:`write` plaintext as it comes, :meth:`close` once; ciphertext goes to ``sink``.

    Used where the plaintext is produced by a pipeline (a dump streamed straight into a ``.enc`` file, so no
    plaintext ever reaches the disk). At least one chunk stays buffered until :meth:`close`, which seals the
    final one (age: a full last chunk carries the last-chunk flag; an empty one only for an empty payload).
    ``chunk_size`` is accepted for the callers of the earlier format and ignored: age chunks are 64 KiB.
    """

    def __init__(self, passphrase, sink, chunk_size=None):  # pylint: disable=unused-argument
        file_key = os.urandom(16)
        salt = os.urandom(16)  # fresh per file: the wrapping key is never reused with its zero nonce
        wrapped = ChaCha20Poly1305(_scrypt_wrap_key(passphrase, salt, SCRYPT_LOG_N)).encrypt(
            b"\x00" * 12, file_key, None)
        header = (AGE_MAGIC + b"-> scrypt " + _b64encode(salt) + b" " + str(SCRYPT_LOG_N).encode("ascii") + b"\n"
                  + _wrap_lines(_b64encode(wrapped)) + b"---")
        mac = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._sink = sink
        self._buffer = bytearray()
        self._index = 0
        self.closed = False
        sink(header + b" " + _b64encode(mac) + b"\n" + nonce)

    def _seal(self, block, final):
        self._sink(self._aead.encrypt(_chunk_nonce(self._index, final), bytes(block), None))
        self._index += 1

    def write(self, data):
        self._buffer += data
        while len(self._buffer) > AGE_CHUNK:
            self._seal(self._buffer[:AGE_CHUNK], False)
            del self._buffer[:AGE_CHUNK]

    def close(self):
        if not self.closed:
            self._seal(self._buffer, True)
            self._buffer = bytearray()
            self.closed = True


def _wrap_lines(text):
    """Body lines of 64 columns; the last one is shorter (possibly empty), as age requires."""
    lines = [text[i:i + _COLUMNS] for i in range(0, len(text), _COLUMNS)]
    if not lines or len(lines[-1]) == _COLUMNS:
        lines.append(b"")
    return b"".join(line + b"\n" for line in lines)


def encrypt_stream(source, sink, passphrase, chunk_size=None):
    """Read plaintext from file object ``source``, write age ciphertext to callable ``sink``."""
    encryptor = Encryptor(passphrase, sink)
    while True:
        block = source.read(AGE_CHUNK * 16)
        if not block:
            break
        encryptor.write(block)
    encryptor.close()


def manifest_entry(passphrase, plain_name, plain_size, plain_digests, chunk_size=None):  # pylint: disable=unused-argument
    """The ``encryption`` field of an encrypted artifact's manifest (what decrypting must give back)."""
    return dict(algorithm=ALGORITHM, format="age-encryption.org/v1", key_id=key_id(passphrase).hex(),
                chunk_size=AGE_CHUNK, plaintext=dict(name=plain_name, size=plain_size,
                                                     sha256=plain_digests["sha256"], md5=plain_digests["md5"]))


def _wrong_key(kid, passphrase):
    return CryptoError("encrypted with another key (key id %s, the given key has id %s): use the key this set was "
                       "made with (dr_encryption_key)" % (kid.hex(), key_id(passphrase).hex()))


def check_key(path, passphrase):
    """Raise :class:`CryptoError` when ``passphrase`` is not the key ``path`` was encrypted with; its key id.

    The earlier format names its key id in the header; an age file is opened by unwrapping its file key (one
    scrypt), which proves the passphrase before any data is decrypted.
    """
    with open(path, "rb") as handle:
        kind, header = _open_header(handle)
    if kind == "legacy":
        kid = header[1]
        if kid != key_id(passphrase):
            raise _wrong_key(kid, passphrase)
        return kid.hex()
    header.file_key(passphrase)
    return key_id(passphrase).hex()


def file_key_id(path, passphrases=()):
    """Key id (hex) of the key ``path`` is under, or None when unknown.

    The earlier format names it in its header; for an age file it is the key id of the first of ``passphrases``
    that unwraps the file key.
    """
    with open(path, "rb") as handle:
        kind, header = _open_header(handle)
    if kind == "legacy":
        return header[1].hex()
    for passphrase in passphrases:
        try:
            header.file_key(passphrase)
        except CryptoError:
            continue
        return key_id(passphrase).hex()
    return None


def _decrypt_age(header, source, sink, passphrase):
    file_key = header.file_key(passphrase)
    nonce = _read_exact(source, 16)
    if len(nonce) < 16:
        raise CryptoError("the age file ends before its payload (truncated)")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    size = AGE_CHUNK + 16
    block = _read_exact(source, size)
    index = 0
    while True:
        following = _read_exact(source, size) if len(block) == size else b""
        final = not following
        if len(block) < 16 or (final and len(block) == 16 and index > 0):
            raise CryptoError("chunk %d of the age payload is truncated (damaged)" % index)
        try:
            plain = aead.decrypt(_chunk_nonce(index, final), block, None)
        except InvalidTag:
            if final:
                raise CryptoError("the final chunk (%d) fails authentication: the file is truncated, damaged or "
                                  "was altered" % index)
            raise CryptoError("chunk %d fails authentication: the file is damaged or was altered" % index)
        sink(plain)
        if final:
            return
        block = following
        index += 1


def _decrypt_legacy(parsed, source, sink, passphrase):
    header, kid, salt, prefix, chunk_size = parsed
    if kid != key_id(passphrase):
        raise CryptoError("encrypted with another key (key id %s, the given key has id %s)" % (
            kid.hex(), key_id(passphrase).hex()))
    aead = AESGCM(_derive(passphrase, salt))
    index = 0
    while True:
        raw_len = source.read(4)
        if len(raw_len) < 4:
            raise CryptoError("the ciphertext ends before its final chunk (truncated)")
        length = struct.unpack(">I", raw_len)[0]
        if length > chunk_size + 16:
            raise CryptoError("chunk %d has an impossible length %d (damaged)" % (index, length))
        sealed = _read_exact(source, length)
        if len(sealed) < length:
            raise CryptoError("chunk %d is truncated" % index)
        nonce = prefix + struct.pack(">I", index)
        try:
            plain = aead.decrypt(nonce, sealed, _aad(header, index, False))
            final = False
        except InvalidTag:
            try:
                plain = aead.decrypt(nonce, sealed, _aad(header, index, True))
                final = True
            except InvalidTag:
                raise CryptoError("chunk %d fails authentication: the file is damaged or was altered" % index)
        sink(plain)
        if final:
            if source.read(1):
                raise CryptoError("data follows the final chunk (the file was altered)")
            return
        index += 1


def decrypt_stream(source, sink, passphrase):
    """Read ciphertext (age v1 or the earlier format) from file object ``source``, write plaintext to ``sink``.

    Returns the key id (hex) of ``passphrase``.
    """
    kind, header = _open_header(source)
    if kind == "legacy":
        _decrypt_legacy(header, source, sink, passphrase)
    else:
        _decrypt_age(header, source, sink, passphrase)
    return key_id(passphrase).hex()


def decrypt_file(src, out, passphrase, expected_sha256=None):
    """Decrypt the artifact ``src`` into ``out`` (atomically, with sidecars); ``(digests, size, key id)``.

    ``expected_sha256`` is the plaintext checksum recorded at backup time: on a mismatch nothing takes the
    name ``out``.
    """
    def verify(written):
        if expected_sha256 and written.digests["sha256"] != expected_sha256:
            raise CryptoError("the decrypted content of %s does not match the checksum recorded at backup time" % src)

    with open(src, "rb") as source:
        return artifact.write_stream(out, lambda sink: decrypt_stream(source, sink, passphrase), verify=verify)
