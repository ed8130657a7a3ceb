"""How a bearer token's form tells a sandbox token (a JWT) from an API key, before anything is looked up."""

from __future__ import annotations

import base64
import json


def looks_like_jwt(token: str) -> bool:
    """Whether `token` is three dot-separated parts whose first decodes to a JSON object (a JWT header)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:  # binascii.Error and JSONDecodeError are ValueErrors
        return False
    return isinstance(header, dict)
