"""The public keys a runtime trusts (:class:`Keyring`) and decoding Ed25519 key text.

Part of :mod:`agentcomm.security`: a receiver verifies a signature against the key
its keyring holds for the claimed sender (:mod:`.signing` signs and verifies).
``cryptography`` is imported only when a key is first used.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentcomm.core.errors import ConfigurationError

__all__ = ["Keyring"]

#: How a PEM block starts (a private key file may be PEM or base64 of the seed).
PEM_BEGIN = "-----BEGIN"


def crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "signing needs the cryptography package: pip install cryptography"
        ) from exc
    return ed25519


def decode_key_text(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{what} is not base64 (nor a PEM block)") from None
    if len(raw) != 32:
        raise ConfigurationError(f"{what} must be 32 bytes once base64-decoded, got {len(raw)}")
    return raw


class Keyring:
    """Known public keys by agent name: whom a receiver believes.

    Example::

        ring = Keyring.from_directory("keys")  # every *.pub file
        ring.add("carol", "q3c1...base64...=")
    """

    def __init__(self, keys: Mapping[str, bytes | str] | None = None) -> None:
        self._keys: dict[str, Any] = {}
        self._raw_keys: dict[str, bytes] = {}
        for name, key in (keys or {}).items():
            self.add(name, key)

    def add(self, name: str, key: bytes | str) -> None:
        """Trust ``key`` (32 raw bytes or base64 text) as the public key of ``name``.

        Adding the key already trusted for ``name`` again is a no-op; a *different*
        key for a name already trusted raises :class:`ConfigurationError`, since a
        silent replacement would let anyone who can build a ``Security`` impersonate
        that agent. Replace a key on purpose with :meth:`rotate`.

        Example::

            ring.add("alice", alice.public_key)
        """
        raw = self._raw(name, key)
        have = self._raw_keys.get(name)
        if have is not None and have != raw:
            raise ConfigurationError(
                f"the keyring already trusts a different public key for {name!r}; "
                f"call rotate({name!r}, new_key) to replace it on purpose"
            )
        self._store(name, raw)

    def rotate(self, name: str, key: bytes | str) -> None:
        """Replace the key trusted for ``name`` (or trust it, if none was).

        Example::

            ring.rotate("alice", new_alice.public_key)
        """
        self._store(name, self._raw(name, key))

    def copy(self) -> Keyring:
        """An independent copy: keys added to one are not added to the other.

        Example::

            mine = ring.copy()
        """
        ring = Keyring()
        ring._keys = dict(self._keys)
        ring._raw_keys = dict(self._raw_keys)
        return ring

    @staticmethod
    def _raw(name: str, key: bytes | str) -> bytes:
        raw = key if isinstance(key, bytes) else decode_key_text(key, f"public key of {name!r}")
        if len(raw) != 32:
            raise ConfigurationError(f"public key of {name!r} must be 32 bytes, got {len(raw)}")
        return raw

    def _store(self, name: str, raw: bytes) -> None:
        self._keys[name] = crypto().Ed25519PublicKey.from_public_bytes(raw)
        self._raw_keys[name] = raw

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> Keyring:
        """Every ``<name>.pub`` file in ``directory``.

        Example::

            ring = Keyring.from_directory("keys")
        """
        ring = cls()
        d = Path(directory)
        if not d.is_dir():
            raise ConfigurationError(f"{d} is not a directory of <name>.pub files")
        for path in sorted(d.glob("*.pub")):
            ring.add(path.stem, path.read_text())
        return ring

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def names(self) -> list[str]:
        """Names with a known key, sorted.

        Example::

            print(ring.names())
        """
        return sorted(self._keys)

    def verify(self, name: str, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is ``name``'s signature of ``data``.

        Example::

            assert ring.verify("alice", alice.sign(b"x"), b"x")
        """
        key = self._keys.get(name)
        if key is None:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True
