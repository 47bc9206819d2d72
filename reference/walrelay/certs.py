"""A cluster's certificate authority and the certificates of its nodes and clients.

Every link runs over mutual TLS (``walrelay.tls``); who may do what follows from the certificate
the peer presented, signed by the cluster's CA. A certificate names its **cluster** and its
**role** in one URI subject-alternative name, ``walrelay://CLUSTER/ROLE/NAME``:

* ``primary``: may send PREPARE, APPEND, TRUNCATE, FETCH and ADMIT to replicas;
* ``replica``: what a primary expects to reach when it dials a replica;
* ``client``: may call an object's operations (and read its status and bookmarks);
* ``admin``: a client that may also call the operations that change an object's history
  (``__restore__``, ``__snapshot__``).

The commands work the way CockroachDB's ``cockroach cert`` commands do: ``walrelay certs init``
makes the CA (``ca.crt``, ``ca.key``) in a directory, ``walrelay certs node`` and ``walrelay certs
client`` issue certificates from it (``NAME.crt``, ``NAME.key``). Keys are ECDSA P-256 (fast TLS
1.3 handshakes), written with mode 0600. The ``cryptography`` package does the X.509 work.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from walrelay.errors import WalrelayError

ROLES = ("primary", "replica", "client", "admin")
NODE_ROLES = ("primary", "replica")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SCHEME = "walrelay://"


class CertError(WalrelayError):
    """A certificate or key that cannot be made, read or used, with what is wrong."""


@dataclass(frozen=True)
class Identity:
    """Who a certificate says its holder is."""

    cluster: str
    role: str
    name: str

    def uri(self) -> str:
        return f"{_SCHEME}{self.cluster}/{self.role}/{self.name}"

    def __str__(self) -> str:
        return f"{self.role} {self.name!r} of cluster {self.cluster!r}"


def _check_name(what: str, value: str) -> str:
    if not _NAME.match(value):
        raise CertError(f"{what} {value!r} must be 1-63 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
    return value


def identity_of(cert: x509.Certificate) -> Identity:
    """The identity in the certificate's ``walrelay://`` URI; CertError if it has none (a
    certificate from some other CA's world, even if the chain verified) or more than one."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertError("the certificate has no subject alternative names: not a walrelay certificate") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(_SCHEME)]
    if len(uris) != 1:
        raise CertError(f"the certificate names {len(uris)} walrelay identities (walrelay://CLUSTER/ROLE/NAME), not 1")
    parts = uris[0][len(_SCHEME) :].split("/")
    if len(parts) != 3 or parts[1] not in (*ROLES, "ca") or not all(_NAME.match(p) for p in parts):
        raise CertError(f"the certificate's identity {uris[0]!r} is not walrelay://CLUSTER/ROLE/NAME")
    return Identity(*parts)


def identity_of_der(der: bytes) -> Identity:
    return identity_of(x509.load_der_x509_certificate(der))


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def create_ca(directory: str | os.PathLike[str], cluster: str, *, days: int = 3650) -> Path:
    """A new CA for ``cluster`` in ``directory`` (ca.crt, ca.key); refuses to replace one."""
    _check_name("cluster", cluster)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if (d / "ca.key").exists() or (d / "ca.crt").exists():
        raise CertError(f"{d} already holds a CA (ca.crt/ca.key): refusing to replace it")
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"walrelay CA {cluster}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(Identity(cluster, "ca", "ca").uri())]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    _write(d / "ca.key", _key_pem(key), secret=True)
    _write(d / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return d / "ca.crt"


def _load_ca(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    try:
        cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    except FileNotFoundError as e:
        raise CertError(f"{e.filename}: missing; run walrelay certs init --dir {d} first") from None
    except ValueError as e:
        raise CertError(f"{d}: the CA's certificate or key is unreadable: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{d / 'ca.key'}: not an EC key")
    return cert, key, identity_of(cert).cluster


def issue(
    directory: str | os.PathLike[str],
    role: str,
    name: str,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> tuple[Path, Path]:
    """A certificate and key for ``role``/``name`` from the CA in ``directory`` (NAME.crt, NAME.key)."""
    if role not in ROLES:
        raise CertError(f"role {role!r} is not one of {', '.join(ROLES)}")
    _check_name("name", name)
    d = Path(directory)
    ca_cert, ca_key, cluster = _load_ca(d)
    key = _new_key()
    ident = Identity(cluster, role, name)
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(ident.uri())]
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if role in ("client", "admin") else []
    usages += [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if role in NODE_ROLES else []
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{role} {name}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt, kf = d / f"{name}.crt", d / f"{name}.key"
    _write(kf, _key_pem(key), secret=True)
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return crt, kf


@dataclass(frozen=True)
class CertPaths:
    """Where a node's or client's TLS files are: the cluster's CA certificate, its own certificate
    and its key."""

    ca: str
    cert: str
    key: str

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str], name: str) -> CertPaths:
        d = Path(directory)
        return cls(str(d / "ca.crt"), str(d / f"{name}.crt"), str(d / f"{name}.key"))


def throwaway(directory: str | os.PathLike[str], cluster: str = "test", *, admin: bool = True) -> Path:
    """A CA with one certificate per role (named after it) in ``directory``: what the demo, the
    tests and the chaos harness use, so that they run with TLS on and need no setup."""
    create_ca(directory, cluster)
    for role in ROLES if admin else ("primary", "replica", "client"):
        issue(directory, role, role)
    return Path(directory)
