#!/usr/bin/python3
"""Generates the JWT fixtures for tests/unit/test_server_auth.cpp, independently of the C++ code.

Keys come from the openssl CLI; JWS compact tokens are assembled by hand (base64url header and
payload), HS256 with Python's hmac, RS256/ES256 with `openssl dgst -sha256 -sign` (the ES256 DER
signature is converted to the raw r||s form JWS uses). Private keys live only in a temp dir; the
outputs are jwks.json, jwks_single.json, rsa_public.pem and tokens.json next to this script.
Run once: /usr/bin/python3 tests/unit/data/auth/make_jwt_fixtures.py
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HS256_SECRET = b"test-hs256-secret-0123456789abcdef"  # also in test_server_auth.cpp
EXP_FUTURE = 4102444800  # 2100-01-01
BASE_CLAIMS = {
    "sub": "user-123",
    "aud": "authenticated",
    "iss": "https://example.supabase.co/auth/v1",
    "role": "authenticated",
    "iat": 1749990000,
    "exp": EXP_FUTURE,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def openssl(*args, stdin=None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout


def claims(**changes):
    c = dict(BASE_CLAIMS)
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def signing_input(header: dict, payload: dict) -> bytes:
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    return f"{h}.{p}".encode()


def der_to_raw_ecdsa(der: bytes) -> bytes:
    # SEQUENCE { INTEGER r, INTEGER s }; each INTEGER may carry a leading 0x00 or be short.
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = int.from_bytes(der[i + 2 : i + 2 + n], "big")
        out += v.to_bytes(32, "big")
        i += 2 + n
    return out


def main():
    tmp = tempfile.mkdtemp()
    rsa_key, ec_key = os.path.join(tmp, "rsa.pem"), os.path.join(tmp, "ec.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa_key)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec_key)
    rsa_pub_pem = openssl("rsa", "-in", rsa_key, "-pubout")

    modulus = openssl("rsa", "-in", rsa_key, "-noout", "-modulus").decode().strip()
    n = int(modulus.split("=", 1)[1], 16)
    text = openssl("rsa", "-in", rsa_key, "-noout", "-text").decode()
    e = int(text.split("publicExponent: ", 1)[1].split(" ", 1)[0])
    ec_spki = openssl("ec", "-in", ec_key, "-pubout", "-outform", "DER")
    point = ec_spki[-65:]  # uncompressed point 04 || x || y ends the P-256 SubjectPublicKeyInfo
    assert point[0] == 4
    x, y = point[1:33], point[33:]

    rsa_jwk = {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
               "n": b64url_uint(n), "e": b64url_uint(e)}
    ec_jwk = {"kty": "EC", "kid": "ec-1", "use": "sig", "crv": "P-256",
              "x": b64url(x), "y": b64url(y)}
    ec_jwk_nokid = {k: v for k, v in ec_jwk.items() if k != "kid"}
    jwks = json.dumps({"keys": [rsa_jwk, ec_jwk]}, indent=2).encode() + b"\n"
    jwks_single = json.dumps({"keys": [ec_jwk_nokid]}, indent=2).encode() + b"\n"

    def sign_pem(key_path: str, data: bytes) -> bytes:
        msg = os.path.join(tmp, "msg")
        with open(msg, "wb") as f:
            f.write(data)
        return openssl("dgst", "-sha256", "-sign", key_path, msg)

    def hs256(payload, secret=HS256_SECRET, **hdr):
        si = signing_input({"alg": "HS256", "typ": "JWT", **hdr}, payload)
        return (si + b"." + b64url(hmac.new(secret, si, hashlib.sha256).digest()).encode()).decode()

    def rs256(payload, kid="rsa-1", alg="RS256"):
        si = signing_input({"alg": alg, "typ": "JWT", "kid": kid}, payload)
        return (si + b"." + b64url(sign_pem(rsa_key, si)).encode()).decode()

    def es256(payload, kid="ec-1", alg="ES256"):
        hdr = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            hdr["kid"] = kid
        si = signing_input(hdr, payload)
        sig = der_to_raw_ecdsa(sign_pem(ec_key, si))
        return (si + b"." + b64url(sig).encode()).decode()

    def unsigned(payload, **hdr):
        return signing_input({"alg": "none", "typ": "JWT", **hdr}, payload).decode() + "."

    tokens = {
        "hs256_valid": hs256(claims()),
        "hs256_aud_array": hs256(claims(aud=["other", "authenticated"])),
        "hs256_expired": hs256(claims(exp=1700000000)),
        "hs256_nbf_future": hs256(claims(nbf=4000000000)),
        "hs256_wrong_aud": hs256(claims(aud="anon")),
        "hs256_wrong_iss": hs256(claims(iss="https://evil.example/auth/v1")),
        "hs256_no_sub": hs256(claims(sub=None)),
        "hs256_no_exp": hs256(claims(exp=None)),
        "hs256_wrong_secret": hs256(claims(), secret=b"not-the-secret"),
        "rs256_valid": rs256(claims()),
        "rs256_no_sub": rs256(claims(sub=None)),
        "rs256_unknown_kid": rs256(claims(), kid="rsa-9"),
        "rs256_with_ec_kid": rs256(claims(), kid="ec-1"),
        "es256_valid": es256(claims()),
        "es256_nokid": es256(claims(), kid=None),
        "es256_with_rsa_kid": es256(claims(), kid="rsa-1"),
        "alg_none": unsigned(claims()),
        "alg_none_kid": unsigned(claims(), kid="rsa-1"),
        # Alg confusion: HMAC keyed with the published RSA public key's PEM text.
        "hs256_confusion": hs256(claims(), secret=rsa_pub_pem, kid="rsa-1"),
        "hs256_confusion_nokid": hs256(claims(), secret=rsa_pub_pem),
    }
    label = b"stepaudio-webhook-v1:user-123"
    expected = {
        "webhook_hs256": hmac.new(HS256_SECRET, label, hashlib.sha256).hexdigest(),
        "webhook_jwks": hmac.new(hashlib.sha256(jwks).digest(), label, hashlib.sha256).hexdigest(),
        "webhook_jwks_single":
            hmac.new(hashlib.sha256(jwks_single).digest(), label, hashlib.sha256).hexdigest(),
    }
    outputs = {
        "jwks.json": jwks,
        "jwks_single.json": jwks_single,
        "rsa_public.pem": rsa_pub_pem,
        "tokens.json": json.dumps({"now_s": 1750000000, "tokens": tokens, "expected": expected},
                                  indent=2).encode() + b"\n",
    }
    for name, data in outputs.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    for name in os.listdir(tmp):
        os.remove(os.path.join(tmp, name))
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
