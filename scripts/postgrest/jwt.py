#!/usr/bin/env python3
"""Prints an HS256 JWT for PostgREST: role pgrst_user, tenant_id claim (standard library only).

usage: jwt.py SECRET TENANT_ID
"""
import base64
import hashlib
import hmac
import json
import sys


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


secret, tenant = sys.argv[1], sys.argv[2]
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
claims = b64(json.dumps({"role": "pgrst_user", "tenant_id": tenant}, separators=(",", ":")).encode())
signing = f"{header}.{claims}".encode()
sig = b64(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
print(f"{header}.{claims}.{sig}")
