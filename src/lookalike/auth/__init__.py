"""Who is calling: credentials (``keys``) and the vendors' request signatures (``signatures``)."""

from lookalike.auth.keys import Credential, IssuedCredential, KeyStore

__all__ = ["Credential", "IssuedCredential", "KeyStore"]
