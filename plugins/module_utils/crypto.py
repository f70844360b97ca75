# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client-side encryption of backup artifacts: AES-256-GCM, streamed in authenticated chunks.

File format (``.enc``)::

    header  = b"ATLASIA-DR-ENC1\\n" | key_id (16 bytes) | salt (16 bytes) | nonce prefix (8 bytes)
              | chunk size (4 bytes, big endian)
    chunk i = length (4 bytes, big endian) | AES-GCM(ciphertext + 16-byte tag)

Each chunk's nonce is ``nonce prefix | i`` (4 bytes) and its associated data is the header, ``i`` and a
final-chunk flag, so chunks cannot be reordered, dropped, or the file truncated or extended without the
decryption failing. The key is derived from the passphrase with scrypt and the per-file salt; ``key_id``
(scrypt of the passphrase with a fixed salt) lets a wrong key be named before
any data is decrypted. Memory is one chunk, whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
import struct

from ansible_collections.atlasia.dr.plugins.module_utils import artifact

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc
    InvalidTag = ValueError

MAGIC = b"ATLASIA-DR-ENC1\n"
HEADER_LEN = len(MAGIC) + 16 + 16 + 8 + 4
DEFAULT_CHUNK = 4 * 1024 * 1024
EXTENSION = ".enc"
ALGORITHM = "AES-256-GCM"
_KDF_N = 2 ** 14


class CryptoError(Exception):
    """Wrong key, damaged or truncated ciphertext, or not an encrypted artifact."""


def key_id(passphrase):
    """Public identifier of a passphrase, recorded in manifests.

    scrypt with a fixed salt: stable for one passphrase, and as costly to brute-force as the file keys.
    """
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=b"atlasia.dr key id", n=_KDF_N, r=8, p=1, dklen=16)


def _derive(passphrase, salt):
    return Scrypt(salt=salt, length=32, n=_KDF_N, r=8, p=1).derive(passphrase.encode("utf-8"))


def read_header(handle):
    header = handle.read(HEADER_LEN)
    if len(header) < HEADER_LEN or not header.startswith(MAGIC):
        raise CryptoError("not an atlasia.dr encrypted artifact (bad or missing header)")
    offset = len(MAGIC)
    kid = header[offset:offset + 16]
    salt = header[offset + 16:offset + 32]
    prefix = header[offset + 32:offset + 40]
    chunk_size = struct.unpack(">I", header[offset + 40:offset + 44])[0]
    return header, kid, salt, prefix, chunk_size


def is_encrypted(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except (OSError, IsADirectoryError):
        return False


def _aad(header, index, final):
    return header + struct.pack(">IB", index, 1 if final else 0)


class Encryptor(object):
    """Incremental encryption: :meth:`write` plaintext as it comes, :meth:`close` once; ciphertext goes to ``sink``.

    Used where the plaintext is produced by a pipeline (a dump streamed straight into a ``.enc`` file, so no
    plaintext ever reaches the disk). At least one chunk stays buffered until :meth:`close`, which seals the
    final one: the output is byte-for-byte the format :func:`encrypt_stream` writes.
    """

    def __init__(self, passphrase, sink, chunk_size=DEFAULT_CHUNK):
        salt = os.urandom(16)
        self._prefix = os.urandom(8)
        self._header = MAGIC + key_id(passphrase) + salt + self._prefix + struct.pack(">I", chunk_size)
        self._aead = AESGCM(_derive(passphrase, salt))
        self._sink = sink
        self._chunk = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self.closed = False
        sink(self._header)

    def _seal(self, block, final):
        sealed = self._aead.encrypt(self._prefix + struct.pack(">I", self._index), bytes(block),
                                    _aad(self._header, self._index, final))
        self._sink(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def write(self, data):
        self._buffer += data
        while len(self._buffer) > self._chunk:
            self._seal(self._buffer[:self._chunk], False)
            del self._buffer[:self._chunk]

    def close(self):
        if not self.closed:
            self._seal(self._buffer, True)
            self._buffer = bytearray()
            self.closed = True


def encrypt_stream(source, sink, passphrase, chunk_size=DEFAULT_CHUNK):
    """Read plaintext from file object ``source``, write ciphertext to callable ``sink``."""
    encryptor = Encryptor(passphrase, sink, chunk_size)
    while True:
        block = source.read(chunk_size)
        if not block:
            break
        encryptor.write(block)
    encryptor.close()


def manifest_entry(passphrase, plain_name, plain_size, plain_digests, chunk_size=DEFAULT_CHUNK):
    """The ``encryption`` field of an encrypted artifact's manifest (what decrypting must give back)."""
    return dict(algorithm=ALGORITHM, key_id=key_id(passphrase).hex(), chunk_size=chunk_size,
                plaintext=dict(name=plain_name, size=plain_size, sha256=plain_digests["sha256"],
                               md5=plain_digests["md5"]))


def check_key(path, passphrase):
    """Raise :class:`CryptoError` when ``passphrase`` is not the key ``path`` was encrypted with."""
    with open(path, "rb") as handle:
        header, kid, salt, prefix, chunk_size = read_header(handle)
    if kid != key_id(passphrase):
        raise CryptoError("encrypted with another key (key id %s, the given key has id %s): use the key this "
                          "set was made with (dr_encryption_key)" % (kid.hex(), key_id(passphrase).hex()))
    return kid.hex()


def decrypt_stream(source, sink, passphrase):
    """Read ciphertext from file object ``source``, write plaintext to callable ``sink``."""
    header, kid, salt, prefix, chunk_size = read_header(source)
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
        sealed = source.read(length)
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
            return kid.hex()
        index += 1


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
