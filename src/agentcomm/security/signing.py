"""Agent identities, signed envelopes, replay protection, and quoting peer content.

With ``Runtime(security=Security(...))`` every envelope an agent sends (requests,
responses, notifications, events) is signed with the sender's Ed25519 key, and every
receiver verifies it against the sender's known public key before a handler runs:

* **canonical encoding**: the signature covers the envelope's JSON encoding with
  dictionary keys sorted, without the signature header itself and without
  ``sequence`` (assigned by the event log after signing), prefixed by a domain tag.
  Every other field (sender, recipient, topic, handler, payload bytes, deadline,
  headers...) is covered, so changing any of them breaks the signature;
* **replay protection** (direct messages): an envelope whose ``created`` time is
  older than ``window`` seconds (or more than ``skew`` in the future) is refused, and
  so is an id seen before from the same sender within the window (a bounded cache of
  ``max_seen`` ids). Events are verified without the replay check: redelivery,
  replay and fan-out hand the same event out several times on purpose;
* failures raise :class:`~agentcomm.errors.AuthenticationError` (or its subclass
  :class:`~agentcomm.errors.ReplayDetected`).

Keys are Ed25519 (the ``cryptography`` package, imported only when signing is used):
``agentcomm keys generate NAME`` writes ``NAME.key`` (PKCS#8 PEM, mode 0600) and
``NAME.pub`` (base64 of the 32-byte public key). Private keys are never logged:
:class:`Identity` has no repr of its key.

Example::

    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    security = Security(identities=[alice, bob])        # both agents run here
    async with Runtime(security=security, agents=[...]) as rt: ...

The keys live in :mod:`.keyring` (:class:`Keyring`, the public keys trusted) and
here (:class:`Identity`, a private key); :func:`~.quoting.quote_untrusted` in
:mod:`.quoting`.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.errors import AuthenticationError, ConfigurationError, ReplayDetected
from agentcomm.security.keyring import PEM_BEGIN, Keyring, crypto, decode_key_text

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["SIGNATURE_HEADER", "Identity", "Security", "canonical_bytes"]

#: The header that carries the base64 Ed25519 signature of the envelope.
SIGNATURE_HEADER = "ac-sig"
_DOMAIN = b"agentcomm-envelope-sig-v1\n"
_canonical_encoder = msgspec.json.Encoder(order="deterministic")


def canonical_bytes(env: Envelope) -> bytes:
    """The bytes a signature covers: the envelope minus its signature and sequence.

    Example::

        data = canonical_bytes(env)  # the same before and after a network hop
    """
    headers = env.headers
    if SIGNATURE_HEADER in headers:
        headers = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
    bare = msgspec.structs.replace(env, headers=headers, sequence=None)
    return _DOMAIN + _canonical_encoder.encode(bare)


class Identity:
    """An agent's Ed25519 key pair (its private half never appears in repr or logs).

    Example::

        alice = Identity.generate("alice")
        alice.save("keys/")                       # keys/alice.key, keys/alice.pub
        again = Identity.from_file("alice", "keys/alice.key")
        assert again.public_key == alice.public_key
    """

    __slots__ = ("_key", "name", "public_key")

    def __init__(self, name: str, private_key: Any) -> None:
        from agentcomm.core.names import check_name

        self.name = check_name("agent", name)
        self._key = private_key
        from cryptography.hazmat.primitives import serialization

        #: The 32 raw bytes of the public key.
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def __repr__(self) -> str:
        return f"<Identity {self.name!r} public={self.public_key_b64()}>"

    @classmethod
    def generate(cls, name: str) -> Identity:
        """A fresh random key pair.

        Example::

            ident = Identity.generate("alice")
        """
        return cls(name, crypto().Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, name: str, text: str | bytes) -> Identity:
        """Load from PKCS#8 PEM, or from base64 of the 32-byte private seed.

        Example::

            ident = Identity.from_text("alice", os.environ["AGENTCOMM_KEY_ALICE"])
        """
        ed = crypto()
        s = text.decode() if isinstance(text, bytes) else text
        if PEM_BEGIN in s:
            from cryptography.hazmat.primitives import serialization

            try:
                key = serialization.load_pem_private_key(s.encode(), password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"the private key of {name!r} is not valid PEM") from exc
            if not isinstance(key, ed.Ed25519PrivateKey):
                raise ConfigurationError(f"the private key of {name!r} is not an Ed25519 key")
            return cls(name, key)
        seed = decode_key_text(s, f"the private key of {name!r}")
        return cls(name, ed.Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_file(cls, name: str, path: str | os.PathLike[str]) -> Identity:
        """Load from a key file (as written by :meth:`save` or ``agentcomm keys generate``).

        Example::

            ident = Identity.from_file("alice", "keys/alice.key")
        """
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the key of {name!r}: {exc}") from None
        return cls.from_text(name, text)

    @classmethod
    def from_env(cls, name: str, variable: str | None = None) -> Identity:
        """Load from an environment variable (default ``AGENTCOMM_KEY_<NAME>``).

        The variable holds the PEM text or base64 of the private seed.

        Example::

            ident = Identity.from_env("alice")  # reads $AGENTCOMM_KEY_ALICE
        """
        var = variable or "AGENTCOMM_KEY_" + name.upper().replace("-", "_")
        text = os.environ.get(var)
        if not text:
            raise ConfigurationError(f"environment variable {var} (the key of {name!r}) is unset")
        return cls.from_text(name, text)

    def public_key_b64(self) -> str:
        """The public key as base64 text (what ``NAME.pub`` holds).

        Example::

            keyring.add("alice", alice.public_key_b64())
        """
        return base64.b64encode(self.public_key).decode()

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep it secret).

        Example::

            Path("alice.key").write_bytes(alice.private_pem())
        """
        from cryptography.hazmat.primitives import serialization

        data: bytes = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return data

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``<dir>/<name>.key`` (mode 0600) and ``<dir>/<name>.pub``; return the key path.

        Example::

            Identity.generate("alice").save("keys")
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        key_path, pub_path = d / f"{self.name}.key", d / f"{self.name}.pub"
        if not overwrite and (key_path.exists() or pub_path.exists()):
            raise ConfigurationError(f"{key_path} exists; remove it or pass overwrite=True")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(key_path, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.private_pem())
        pub_path.write_text(self.public_key_b64() + "\n")
        return key_path

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``.

        Example::

            sig = alice.sign(b"hello")
        """
        sig: bytes = self._key.sign(data)
        return sig


class Security:
    """Signing and verification settings of a runtime: ``Runtime(security=...)``.

    ``identities`` are the private keys of the agents this process sends as (their
    public keys are trusted automatically); ``keys`` the public keys of the others.
    The ``keys`` passed in are copied, never changed; an identity whose name the
    keyring already trusts with a different key is refused
    (:class:`ConfigurationError`): one ``Security`` cannot replace another agent's key.
    ``window`` seconds bound how old a direct message may be (and how long its id is
    remembered), ``skew`` how far in the future its ``created`` time may be, and
    ``max_seen`` the number of ids remembered (the oldest are forgotten first; then
    any message created at or before the newest forgotten one is refused, so a
    forgotten id cannot be replayed inside the window).

    Example::

        security = Security(
            identities=[Identity.from_env("alice")],
            keys=Keyring.from_directory("/etc/agentcomm/keys"),
        )
    """

    def __init__(
        self,
        *,
        identities: Iterable[Identity] = (),
        keys: Keyring | Mapping[str, bytes | str] | None = None,
        window: float = 300.0,
        skew: float = 30.0,
        max_seen: int = 100_000,
    ) -> None:
        if window <= 0 or skew < 0 or max_seen < 1:
            raise ConfigurationError("window must be > 0, skew >= 0 and max_seen >= 1")
        # A copy: the caller's keyring is shared with other runtimes (or other Security
        # objects) and must not learn this process's identities behind its back.
        self.keys = keys.copy() if isinstance(keys, Keyring) else Keyring(keys)
        self._identities: dict[str, Identity] = {}
        for ident in identities:
            if ident.name in self._identities:
                raise ConfigurationError(f"two identities named {ident.name!r}")
            self._identities[ident.name] = ident
            try:
                self.keys.add(ident.name, ident.public_key)
            except ConfigurationError:
                raise ConfigurationError(
                    f"identity {ident.name!r} does not match the public key the keyring "
                    f"trusts for {ident.name!r}; load the right key file, or rotate the "
                    "keyring's key on purpose (Keyring.rotate)"
                ) from None
        self.window = window
        self.skew = skew
        self.max_seen = max_seen
        self._seen: OrderedDict[str, float] = OrderedDict()
        # the created time of the newest id forgotten because the cache was full
        self._floor = float("-inf")
        self.signed = self.verified = self.refused = self.replays = 0

    def identity(self, name: str) -> Identity:
        """The identity this process signs as ``name``; ConfigurationError if unknown.

        Example::

            security.identity("alice")
        """
        ident = self._identities.get(name)
        if ident is None:
            raise ConfigurationError(
                f"agent {name!r} has no signing identity; pass "
                f"Security(identities=[Identity.from_env({name!r}), ...])"
            )
        return ident

    def sign(self, env: Envelope) -> Envelope:
        """Return ``env`` with its sender's signature in the ``ac-sig`` header.

        Example::

            signed = security.sign(env)
        """
        sig = self.identity(env.sender).sign(canonical_bytes(env))
        headers = dict(env.headers)
        headers[SIGNATURE_HEADER] = base64.b64encode(sig).decode()
        self.signed += 1
        return msgspec.structs.replace(env, headers=headers)

    def verify(self, env: Envelope, *, replay: bool = True, now: float | None = None) -> None:
        """Raise AuthenticationError unless ``env`` carries its sender's valid signature.

        With ``replay`` (direct messages), also refuse a message outside the validity
        window or with an id already seen (ReplayDetected), and remember its id.

        Example::

            security.verify(env)              # a request or notification
            security.verify(event, replay=False)
        """
        sig_text = env.headers.get(SIGNATURE_HEADER)
        who = f"message {env.id!r} claiming to be from {env.sender!r}"
        if sig_text is None:
            self.refused += 1
            raise AuthenticationError(f"{who} is not signed, and this runtime requires signatures")
        if env.sender not in self.keys:
            self.refused += 1
            raise AuthenticationError(
                f"{who}: no public key is known for {env.sender!r}; add it to the Keyring"
            )
        try:
            sig = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError):
            sig = b""
        if len(sig) != 64 or not self.keys.verify(env.sender, sig, canonical_bytes(env)):
            self.refused += 1
            raise AuthenticationError(
                f"{who} has a bad signature: forged sender or tampered message"
            )
        if replay:
            self._check_fresh(env, who, time.time() if now is None else now)
        self.verified += 1

    def _check_fresh(self, env: Envelope, who: str, now: float) -> None:
        created = env.created
        if not created > now - self.window or created > now + self.skew:  # NaN fails too
            self.refused += 1
            self.replays += 1
            raise ReplayDetected(
                f"{who} was created at {created!r}, outside the validity window "
                f"(now {now:.3f}, window {self.window:g}s, skew {self.skew:g}s); "
                "a replay, or clocks out of sync"
            )
        seen = self._seen
        while seen:  # forget ids whose messages have left the window anyway
            oldest_id, expires = next(iter(seen.items()))
            if expires > now:
                if len(seen) < self.max_seen:
                    break
                # forgotten while still inside the window: refuse what is not newer
                self._floor = max(self._floor, expires - self.window)
            del seen[oldest_id]
        if created <= self._floor:
            self.refused += 1
            self.replays += 1
            raise ReplayDetected(
                f"{who} was created at {created!r}, not after {self._floor!r}, the newest "
                f"message forgotten by the full replay cache (max_seen={self.max_seen}); "
                "a replay, or raise max_seen"
            )
        key = f"{env.sender}\x00{env.id}"
        if key in seen:
            self.refused += 1
            self.replays += 1
            raise ReplayDetected(f"{who} was already received: a replay")
        seen[key] = created + self.window
