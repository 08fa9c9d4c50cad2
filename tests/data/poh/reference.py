#!/usr/bin/env python3
"""Independent reference implementation of proof-of-hardware
int8-gemm-chain-v1 (docs/PROTOCOL-POH.md), written from the document
alone with pyca/cryptography's ChaCha20 and hashlib's BLAKE2b.  It prints
the known-answer vectors that tests/unit/test_poh.c checks the C code
against.  Slow (pure Python): for small n only.

    python3 tests/data/poh/reference.py
"""
import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms


def key_stream(seed, length):
    # pyca's 16-byte ChaCha20 "nonce" is the 32-bit block counter (little
    # endian) followed by the 96-bit IETF nonce: counter 0, nonce all zero.
    nonce = (0).to_bytes(4, "little") + bytes(12)
    enc = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor()
    return enc.update(bytes(length))


def s8(b):
    return b - 256 if b >= 128 else b


def poh_map(c):
    return s8(((c & 0xFFFFFFFF) >> 7) & 0xFF)


def final_rows(seed, n, rounds):
    ks = key_stream(seed, 2 * n * n)
    a = [[s8(ks[i * n + j]) for j in range(n)] for i in range(n)]
    b = [[s8(ks[n * n + i * n + j]) for j in range(n)] for i in range(n)]
    for _ in range(rounds):
        a = [[poh_map(sum(a[i][k] * b[k][j] for k in range(n))) for j in range(n)]
             for i in range(n)]
    return a


def blake(data):
    return hashlib.blake2b(data, digest_size=32).digest()


def leaf(i, row):
    return blake(b"\x00" + i.to_bytes(4, "little") + bytes(x & 0xFF for x in row))


def merkle_root(rows):
    level = [leaf(i, r) for i, r in enumerate(rows)]
    while len(level) > 1:
        up = [blake(b"\x01" + level[p] + level[p + 1]) for p in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])   # odd: the last node moves up unchanged
        level = up
    return level[0]


if __name__ == "__main__":
    seed = bytes(range(32))
    for n, rounds in ((16, 2), (48, 3)):
        rows = final_rows(seed, n, rounds)
        print(f"seed 00..1f n={n} rounds={rounds}: row 0 {rows[0][:8]} "
              f"root {merkle_root(rows).hex()}")
