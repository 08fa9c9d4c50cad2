/*
 * sha256.c - SHA-256 on the SHA extensions of x86-64 processors, with
 * libsodium's portable code wherever they are missing (sha256.h).
 *
 * The compression function is FIPS 180-4's, four rounds per pair of
 * sha256rnds2 instructions, the message schedule with sha256msg1/msg2.
 * The state is kept in the order those instructions want (ABEF, CDGH)
 * only inside one call; between calls it is the standard H0..H7.
 */
#include <string.h>

#include "sha256.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static int accel = -1;   /* -1 not probed yet, 0 no, 1 yes */
static bool accel_allowed = true;

#ifdef HAVE_SHA_NI
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static bool probe(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
		return false;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return (b & (1u << 29)) != 0;   /* CPUID.(EAX=7,ECX=0):EBX.SHA */
}

/* Hash nblocks 64-byte blocks of p into h[8]. */
__attribute__((target("sha,sse4.1,ssse3")))
static void blocks(uint32_t h[8], const unsigned char *p, size_t nblocks)
{
	const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i s0, s1, t;

	t = _mm_loadu_si128((const __m128i *)&h[0]);          /* DCBA */
	s1 = _mm_loadu_si128((const __m128i *)&h[4]);         /* HGFE */
	t = _mm_shuffle_epi32(t, 0xB1);                       /* CDAB */
	s1 = _mm_shuffle_epi32(s1, 0x1B);                     /* EFGH */
	s0 = _mm_alignr_epi8(t, s1, 8);                       /* ABEF */
	s1 = _mm_blend_epi16(s1, t, 0xF0);                    /* CDGH */

	for (; nblocks > 0; nblocks--, p += 64) {
		__m128i abef = s0, cdgh = s1, w[4];

		for (int i = 0; i < 4; i++)
			w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), mask);
		for (int i = 0; i < 16; i++) {
			__m128i m = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&K[4 * i]));

			s1 = _mm_sha256rnds2_epu32(s1, s0, m);
			s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
			if (i < 12) {
				/* W[i+4] from W[i] .. W[i+3], replacing W[i] */
				__m128i x = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);

				x = _mm_add_epi32(x, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
				w[i & 3] = _mm_sha256msg2_epu32(x, w[(i + 3) & 3]);
			}
		}
		s0 = _mm_add_epi32(s0, abef);
		s1 = _mm_add_epi32(s1, cdgh);
	}

	t = _mm_shuffle_epi32(s0, 0x1B);                      /* FEBA */
	s1 = _mm_shuffle_epi32(s1, 0xB1);                     /* DCHG */
	s0 = _mm_blend_epi16(t, s1, 0xF0);                    /* DCBA */
	s1 = _mm_alignr_epi8(s1, t, 8);                       /* HGFE */
	_mm_storeu_si128((__m128i *)&h[0], s0);
	_mm_storeu_si128((__m128i *)&h[4], s1);
}
#else
static bool probe(void)
{
	return false;
}

static void blocks(uint32_t h[8], const unsigned char *p, size_t nblocks)
{
	(void)h;
	(void)p;
	(void)nblocks;
}
#endif

bool sha256_accelerated(void)
{
	int a = __atomic_load_n(&accel, __ATOMIC_RELAXED);

	if (a < 0) {
		a = probe() ? 1 : 0;
		__atomic_store_n(&accel, a, __ATOMIC_RELAXED);
	}
	return a == 1 && __atomic_load_n(&accel_allowed, __ATOMIC_RELAXED);
}

void sha256_allow_accel(bool allow)
{
	__atomic_store_n(&accel_allowed, allow, __ATOMIC_RELAXED);
}

void sha256_init(sha256_ctx *c)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};

	memset(c, 0, sizeof(*c));
	c->ni = sha256_accelerated();
	if (c->ni)
		memcpy(c->u.x.h, iv, sizeof(iv));
	else
		crypto_hash_sha256_init(&c->u.sodium);
}

void sha256_update(sha256_ctx *c, const void *data, size_t len)
{
	const unsigned char *p = data;

	if (len == 0)
		return;
	if (!c->ni) {
		crypto_hash_sha256_update(&c->u.sodium, p, len);
		return;
	}
	c->u.x.len += len;
	if (c->u.x.nbuf > 0) {
		size_t take = 64 - c->u.x.nbuf < len ? 64 - c->u.x.nbuf : len;

		memcpy(c->u.x.buf + c->u.x.nbuf, p, take);
		c->u.x.nbuf += take;
		p += take;
		len -= take;
		if (c->u.x.nbuf < 64)
			return;
		blocks(c->u.x.h, c->u.x.buf, 1);
		c->u.x.nbuf = 0;
	}
	if (len >= 64) {
		blocks(c->u.x.h, p, len / 64);
		p += len - len % 64;
		len %= 64;
	}
	memcpy(c->u.x.buf, p, len);
	c->u.x.nbuf = len;
}

void sha256_final(sha256_ctx *c, unsigned char out[SHA256_BYTES])
{
	uint64_t bits;
	unsigned char *b;

	if (!c->ni) {
		crypto_hash_sha256_final(&c->u.sodium, out);
		return;
	}
	bits = c->u.x.len * 8;
	b = c->u.x.buf;
	b[c->u.x.nbuf++] = 0x80;
	if (c->u.x.nbuf > 56) {
		memset(b + c->u.x.nbuf, 0, 64 - c->u.x.nbuf);
		blocks(c->u.x.h, b, 1);
		c->u.x.nbuf = 0;
	}
	memset(b + c->u.x.nbuf, 0, 56 - c->u.x.nbuf);
	for (int i = 0; i < 8; i++)
		b[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
	blocks(c->u.x.h, b, 1);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (unsigned char)(c->u.x.h[i] >> 24);
		out[4 * i + 1] = (unsigned char)(c->u.x.h[i] >> 16);
		out[4 * i + 2] = (unsigned char)(c->u.x.h[i] >> 8);
		out[4 * i + 3] = (unsigned char)c->u.x.h[i];
	}
	sodium_memzero(c, sizeof(*c));
}
