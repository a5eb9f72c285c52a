#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/seed-*) from the shared test vectors, the API
documentation's examples and the tests' fixtures. Needs pyca/cryptography (the vectors' own
implementation) for the values encrypted under the test keys of fuzz/src/lib.rs."""
import base64, hashlib, hmac, json, os, struct, time
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
AES_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")   # keyIndex 1
TDES_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # keyIndex 2
SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def m2(clear, block):
    padded = clear + b"\x80"
    return padded + b"\x00" * (-len(padded) % block)


def enc(index, clear):
    if index == "1":
        c = Cipher(algorithms.AES(AES_KEY), modes.CBC(b"\0" * 16)).encryptor()
        return (c.update(m2(clear, 16)) + c.finalize()).hex().upper()
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    c = Cipher(TripleDES(TDES_KEY + TDES_KEY[:8]), modes.CBC(b"\0" * 8)).encryptor()
    return (c.update(m2(clear, 8)) + c.finalize()).hex().upper()


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def js(v):
    return json.dumps(v, separators=(",", ":"))


# /data and /newData: a mode byte (bit 0 /newData, bit 1 the harness encrypts), then the body.
CMK = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")
TRACK2 = bytes.fromhex("4761739001010119D22122011758928889")
full = [
    {"name": "cmk_ac", "value": enc("1", CMK), "keyIndex": "1"},
    {"name": "cmk_rp", "value": enc("2", CMK), "keyIndex": "2"},
    {"name": "track2_data", "value": enc("1", TRACK2), "keyIndex": "1"},
    {"name": "psn", "value": "01"},
    {"name": "par", "value": "Q1ZXAB0000000000000000000001"},
]
write("data", "data-full", b"\0" + js({"issuerId": "ISSUER0001", "tokenPersoInfo": full}).encode())
write("data", "newdata-full", b"\1" + js({"issuerId": "ISSUER0001", "tokenInfo": {"exp": "0631", "last4": "9876"},
                                         "tokenPersoInfo": full}).encode())
write("data", "newdata-info-only", b"\1" + js({"issuerId": "ISSUER0001", "tokenInfo": {"last4": "1111"}}).encode())
write("data", "default-keys", b"\0" + js({"issuerId": "ISSUER0001", "tokenPersoInfo": [
    {"name": "CMK_AC", "value": enc("1", CMK)}, {"name": "cmk_rp", "value": enc("2", CMK)},
    {"name": "track2_data", "value": enc("1", TRACK2)}, {"name": "psn", "value": "1"}]}).encode())
write("data", "harness-encrypts", b"\2" + js({"issuerId": "ISSUER0001", "tokenPersoInfo": [
    {"name": "cmk_ac", "value": CMK.hex(), "keyIndex": "1"},
    {"name": "psn", "value": "12", "keyIndex": "2"},
    {"name": "par", "value": "PAR é", "keyIndex": "1"},
    {"name": "cvm", "value": "text\u00e9", "keyIndex": "2"}]}).encode())
write("data", "refused-values", b"\0" + js({"issuerId": "ISSUER0001", "tokenPersoInfo": [
    {"name": "cmk_ac", "value": "00" * 16, "keyIndex": "1"},
    {"name": "cmk_rp", "value": "ABC", "keyIndex": "9"},
    {"name": "track2_data", "value": "zz", "keyIndex": "1"},
    {"name": "psn", "value": "1a"}]}).encode())
write("data", "extras", b"\1" + js({"issuerId": "ISSUER0001", "x": 1, "tokenInfo": {"exp": "1399", "y": None},
                                   "tokenPersoInfo": [{"name": "psn", "value": "01", "z": True}, None]}).encode())
write("data", "missing", b"\0" + js({"tokenPersoInfo": "no"}).encode())
write("data", "shapes", b"\0" + js({"issuerId": 5, "tokenPersoInfo": [{"name": "psn"}, {"value": "01"}]}).encode())

# The token update body (the receiver's parser).
# The shared vectors beside the repository, else the receiver's copy of them.
shared = os.path.join(HERE, "../../shared/vectors/webhooks.json")
if not os.path.exists(shared):
    shared = os.path.join(HERE, "../crates/tokenhub-receiver/tests/vectors/webhooks.json")
hooks = json.load(open(shared))
update = hooks["vectors"][1]["body"]
write("update", "vector", update)
write("update", "full", js({"tokenId": "TKN0001", "merchantId": "M1", "tokenState": "ACTIVE",
                            "tokenLastDigits": "1234", "tokenExpiryDate": "0631", "cardLastDigits": "9876",
                            "cardExpiryDate": "1230", "cardArtId": "art-1",
                            "lastUpdateTimestamp": "2026-11-25T10:00:00.123456+02:00"}))
write("update", "nulls", js({"tokenId": "T", "merchantId": "M", "tokenState": None, "cardArtId": None,
                             "lastUpdateTimestamp": "2026-01-01t00:00:00z"}))
write("update", "timestamp", "1985-04-12T23:20:50.52Z")

# The profile definition, then a value per element (a length byte and the bytes).
docs = {
    "dataElements": [
        {"name": "cmk_ac", "required": True, "format": "hex", "maxLength": 32, "sensitive": True, "dgi": "8001"},
        {"name": "cmk_rp", "required": True, "format": "hex", "maxLength": 32, "sensitive": True, "dgi": "8002"},
        {"name": "track2_data", "required": True, "format": "hex", "maxLength": 38, "sensitive": True, "dgi": "0101", "tag": "57"},
        {"name": "psn", "required": True, "format": "digits", "maxLength": 2, "dgi": "0101", "tag": "5F34"},
        {"name": "par", "required": True, "format": "text", "maxLength": 29, "dgi": "0101", "tag": "9F24"},
    ],
    "template": [{"dgi": "9102", "data": "A5058801015F2D02656E"}, {"dgi": "0101", "data": "70049F0701FF"}],
}
values = b"".join(bytes([len(v)]) + v for v in [CMK, CMK, TRACK2, b"\x01", b"PAR0001"])
write("profile", "docs", js(docs).encode() + values)
v2 = json.loads(js(docs))
v2["template"].append({"dgi": "0202", "data": "70059F5D020001"})
v2["defaultKeyIndex"] = "1"
write("profile", "campaign-v2", js(v2).encode() + values)
write("profile", "fixture", open(os.path.join(HERE, "src/lib.rs")).read().split('r#"')[1].split('"#')[0].encode()
      + values + b"\x03abc")
write("profile", "readme", js({"dataElements": [
    {"name": "cmk_ac", "required": True, "format": "hex", "maxLength": 32, "sensitive": True},
    {"name": "par", "required": False, "format": "text", "maxLength": 29, "defaultKeyIndex": "k"}],
    "template": [{"dgi": "9102", "data": "A5058801015F2D02656E"}]}))
write("profile", "long-tag", js({"dataElements": [
    {"name": "a", "format": "hex", "dgi": "0A0B", "tag": "9F8101"},
    {"name": "b", "format": "hex", "dgi": "8000"}], "template": []}).encode() + b"\x7f" + b"\x11" * 127 + b"\xff")

# CPS wire form, BER-TLV and a data part's layout.
def dgi(i, v):
    return struct.pack(">H", i) + (bytes([len(v)]) if len(v) < 0xFF else b"\xff" + struct.pack(">H", len(v))) + v
write("cps", "profile", dgi(0x9102, bytes.fromhex("A5058801015F2D02656E"))
      + dgi(0x0101, bytes.fromhex("70179F0701FF5711") + TRACK2[:0] + bytes.fromhex("4761739001010119D22122011758928889"))
      + dgi(0x8001, CMK) + dgi(0x0202, b"\x70" + b"\x81\xff" + b"\x00" * 255))
write("cps", "tlv", bytes.fromhex("9F8101025F2D02656E70038201AA"))
def part(elements):
    out = b"\x01"
    for name, key, form, value in elements:
        out += struct.pack(">H", len(name)) + name + struct.pack(">H", len(key)) + key
        out += bytes([form]) + struct.pack(">I", len(value)) + value
    return out
write("cps", "part", part([(b"cmk_ac", b"1", 1, CMK), (b"psn", b"", 0, b"01"), (b"par", b"", 2, b"\xab\xcd")]))

# The receiver: a mode byte (bit 0 the harness signs, bit 1 the right API key), four header lines,
# the body.
for n, v in enumerate(hooks["vectors"]):
    lines = ["APIKEY wrong", v["webhook-id"], v["webhook-timestamp"], v["webhook-signature"]]
    write("webhook", f"vector-{n}", b"\0" + "\n".join(lines + [v["body"]]).encode())
write("webhook", "signed", b"\3" + "\n".join(["", "msg_1", "", "v1,AAAA", update]).encode())
write("webhook", "signed-bad-body", b"\3" + "\n".join(["", "msg_2", "", "", '{"tokenId":""}']).encode())
write("webhook", "api-key", b"\0" + "\n".join(["apikey  fuzz-api-key ", "m", "1", "v1,x v2,y", "{}"]).encode())

# The element checks against a profile from the input: a profile's JSON, then a /data seed.
fixture = open(os.path.join(HERE, "src/lib.rs")).read().split('r#"')[1].split('"#')[0]
data_dir = os.path.join(HERE, "corpus", "data")
for name in sorted(os.listdir(data_dir)):
    if name.startswith("seed-"):
        seed = open(os.path.join(data_dir, name), "rb").read()
        write("elements", "fixture-" + name[5:], fixture.encode() + seed)
        write("elements", "docs-" + name[5:], js(v2).encode() + seed)
