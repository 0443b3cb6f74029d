"""A PKI in a directory (`podmedic certs init | check`): the four files of a kubernetes.io/tls
Secret plus its CA -- `ca.crt`, `ca.key`, `tls.crt`, `tls.key` -- so a directory written here
can be loaded into a Secret as is. Writes are atomic (a reloading server never reads half a
file) and keys are never readable by others. Returns what it did; the CLI prints it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from webhook.pki.x509 import (IP, RENEW_AFTER, CertError, PrivateKey, ca_problems, cert_pem, chain_problems,
                              days_left, describe_names, due_for_renewal, generate_ca, iso, issue_serving_cert,
                              key_pem, parse_chain, parse_key, validity_problems)


@dataclass(frozen=True)
class PkiPaths:
    """Where the four files of a PKI directory live (kubernetes.io/tls Secret key names)."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str]) -> PkiPaths:
        d = Path(directory)
        return cls(d / "ca.crt", d / "ca.key", d / "tls.crt", d / "tls.key")


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and rename: a reader (the server's reloader) sees the
    old file or the new one, never half of one. The temporary file is created 0600, so a key
    is never readable by others, not even for a moment."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pair(cert: x509.Certificate, key: PrivateKey, cert_path: Path, key_path: Path) -> None:
    """Write a certificate (0644) and its key (0600); the key first, so that a reader that
    sees the new certificate also finds its key."""
    try:
        _write_atomic(key_path, key_pem(key), 0o600)
        _write_atomic(cert_path, cert_pem(cert), 0o644)
    except OSError as exc:
        raise CertError(f"cannot write {exc.filename or cert_path}: {exc.strerror}") from None


def read_file(path: Path) -> bytes:
    """The file's bytes, or CertError naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertError(f"{path}: cannot read: {exc.strerror}") from None


def load_chain(path: Path) -> list[x509.Certificate]:
    return parse_chain(read_file(path), str(path))


def load_cert(path: Path) -> x509.Certificate:
    """The first (leaf) certificate of a PEM file."""
    return load_chain(path)[0]


def load_key(path: Path) -> PrivateKey:
    return parse_key(read_file(path), str(path))


def _exists(*paths: Path) -> list[Path]:
    return [p for p in paths if p.exists() or p.is_symlink()]


def _usable_ca(paths: PkiPaths) -> tuple[x509.Certificate, PrivateKey]:
    """The existing CA, or CertError saying why it cannot sign."""
    cert, key = load_cert(paths.ca_cert), load_key(paths.ca_key)
    problems = ca_problems(cert, key)
    if problems:
        raise CertError(f"{paths.ca_cert}: {'; '.join(problems)}")
    return cert, key


def _ensure_ca(paths: PkiPaths, days: int, force: bool, notes: list[str]) -> tuple[x509.Certificate, PrivateKey]:
    present = _exists(paths.ca_cert, paths.ca_key)
    if present:
        try:
            return _usable_ca(paths)
        except CertError as exc:
            if not force:
                raise CertError(f"{exc} (--force replaces the CA; every caBundle must then be updated)") from None
            notes.append(f"replacing the unusable CA: {exc}")
    elif _exists(paths.cert, paths.key) and not force:
        raise CertError(f"{paths.cert.parent} holds a serving pair but no CA; not touching it without --force")
    cert, key = generate_ca(days=days)
    write_pair(cert, key, paths.ca_cert, paths.ca_key)
    notes.append(f"created the CA {paths.ca_cert} ({cert.subject.rfc4514_string()}, valid until "
                 f"{iso(cert.not_valid_after_utc)})")
    return cert, key


def _serving_action(paths: PkiPaths, ca: x509.Certificate, dns: Sequence[str], ips: Sequence[IP],
                    force: bool, notes: list[str]) -> str | None:
    """Why the serving pair must be (re-)issued, or None to keep it. CertError refuses to
    replace a pair that is usable but not for these names (or not ours) without --force."""
    if force:
        return "--force"
    if not _exists(paths.cert, paths.key):
        return "new"
    try:
        chain, key = load_chain(paths.cert), load_key(paths.key)
        problems = [f"{paths.cert}: {p}" for p in chain_problems(chain, key, ca, dns, ips)]
    except CertError as exc:
        problems = [str(exc)]
    if problems:
        raise CertError(f"{'; '.join(problems)} (--force re-issues the pair from the CA)")
    expired = validity_problems(chain[0], "it")
    if expired:
        return f"renewal: {expired[0]}"
    if due_for_renewal(chain[0]):
        return f"renewal: past {RENEW_AFTER:.0%} of its lifetime"
    notes.append(f"{paths.cert} is valid for {describe_names(dns, ips)} until {iso(chain[0].not_valid_after_utc)} "
                 f"({days_left(chain[0]):.0f} days left); nothing to do")
    return None


def init(paths: PkiPaths, dns: Sequence[str], ips: Sequence[IP], *, days: int, ca_days: int,
         force: bool) -> list[str]:
    """Keep a usable CA (or create one), and keep the serving pair while it is valid for these
    names and before two thirds of its lifetime, else issue it from the CA. Idempotent; returns
    one line per thing done or kept. CertError (or OSError) when it cannot."""
    notes: list[str] = []
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _ensure_ca(paths, ca_days, force, notes)
    reason = _serving_action(paths, ca_cert, dns, ips, force, notes)
    if reason is not None:
        cert, key = issue_serving_cert(ca_cert, ca_key, dns, ips, days=days)
        write_pair(cert, key, paths.cert, paths.key)
        notes.append(f"issued {paths.cert} ({reason}) for {describe_names(dns, ips)}, valid until "
                     f"{iso(cert.not_valid_after_utc)}")
    return notes
