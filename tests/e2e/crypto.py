"""What the random and tls providers compute, computed for real for the
applier: passwords from `secrets`, keys and certificates with `cryptography`,
following each provider's documented arguments."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import string
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# random_password's default special characters.
DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def random_password(inputs: dict[str, Any]) -> dict[str, Any]:
    """random_password: `length` characters from the enabled classes, at least
    `min_*` of each, shuffled with a CSPRNG."""
    length = int(inputs["length"])
    classes = [
        (inputs.get("lower", True), string.ascii_lowercase, int(inputs.get("minLower", 0))),
        (inputs.get("upper", True), string.ascii_uppercase, int(inputs.get("minUpper", 0))),
        (inputs.get("numeric", True), string.digits, int(inputs.get("minNumeric", 0))),
        (
            inputs.get("special", True),
            inputs.get("overrideSpecial") or DEFAULT_SPECIAL,
            int(inputs.get("minSpecial", 0)),
        ),
    ]
    chars = [secrets.choice(alphabet) for enabled, alphabet, least in classes if enabled for _ in range(least)]
    pool = "".join(alphabet for enabled, alphabet, _ in classes if enabled)
    chars += [secrets.choice(pool) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return {**inputs, "result": "".join(chars)}


def private_key(inputs: dict[str, Any]) -> dict[str, Any]:
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm == "ECDSA":
        curves = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
        key: Any = ec.generate_private_key(curves[inputs.get("ecdsaCurve", "P224")])
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    elif algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    else:
        raise NotImplementedError(f"tls PrivateKey algorithm {algorithm!r}")
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {**inputs, "privateKeyPem": pem.decode(), "publicKeyPem": public.decode()}


def _name(subject: dict[str, Any] | None) -> x509.Name:
    fields = {
        "commonName": NameOID.COMMON_NAME,
        "organization": NameOID.ORGANIZATION_NAME,
        "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "country": NameOID.COUNTRY_NAME,
        "locality": NameOID.LOCALITY_NAME,
        "province": NameOID.STATE_OR_PROVINCE_NAME,
    }
    unknown = set(subject or {}) - set(fields)
    if unknown:
        raise NotImplementedError(f"tls subject fields {sorted(unknown)}")
    return x509.Name([x509.NameAttribute(fields[k], str(v)) for k, v in (subject or {}).items()])


_KEY_USAGES = {
    "digital_signature": "digital_signature",
    "key_encipherment": "key_encipherment",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}
_EXTENDED = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _certificate(
    inputs: dict[str, Any],
    *,
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    signing_key: Any,
    sans: list[x509.GeneralName],
) -> str:
    uses = list(inputs.get("allowedUses") or [])
    unknown = set(uses) - set(_KEY_USAGES) - set(_EXTENDED)
    if unknown:
        raise NotImplementedError(f"tls allowed_uses {sorted(unknown)}")
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=float(inputs["validityPeriodHours"])))
    )
    usage = {name: False for name in _KEY_USAGES.values()}
    usage.update({_KEY_USAGES[u]: True for u in uses if u in _KEY_USAGES})
    if any(usage.values()):
        builder = builder.add_extension(
            x509.KeyUsage(
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
    extended = [_EXTENDED[u] for u in uses if u in _EXTENDED]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    is_ca = bool(inputs.get("isCaCertificate"))
    path_length = int(inputs["maxPathLength"]) if is_ca and "maxPathLength" in inputs else None
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _sans(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []]
    return names


def self_signed_cert(inputs: dict[str, Any]) -> dict[str, Any]:
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    name = _name(inputs.get("subject"))
    pem = _certificate(
        inputs, subject=name, public_key=key.public_key(), issuer=name, signing_key=key, sans=_sans(inputs)
    )
    return {**inputs, "certPem": pem, "readyForRenewal": False}


def cert_request(inputs: dict[str, Any]) -> dict[str, Any]:
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
    sans = _sans(inputs)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return {**inputs, "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}


def locally_signed_cert(inputs: dict[str, Any]) -> dict[str, Any]:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    ca_key = serialization.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), password=None)
    try:
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    pem = _certificate(
        inputs, subject=csr.subject, public_key=csr.public_key(), issuer=ca.subject, signing_key=ca_key, sans=sans
    )
    return {**inputs, "certPem": pem, "readyForRenewal": False}
