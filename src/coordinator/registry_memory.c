/*
 * registry_memory.c - the in-process registry backend (the embedded
 * default): everything lives in this process's memory.
 *
 * Nodes: a hash map node_id -> node, two index maps (model name -> nodes,
 * content hash -> nodes) and a min-heap on expiry, all under one
 * reader/writer lock (writer-preferring, so a stream of lookups cannot
 * starve heartbeats).  Lookups take the read lock; heartbeats the write
 * lock.  active_jobs is atomic so that authorize can bump it under the
 * read lock.  Each index bucket is an array of node pointers; every
 * model slot of a node remembers its position in its buckets, so removing
 * a node is O(its models) (swap with the last ref) and finding a model is
 * O(nodes listed under it), never a scan of all nodes.  A node is stored
 * packed in one allocation (below, "node records, packed"): about 470
 * bytes a node with heartbeat-like records, index and map included
 * (bench/bench_registry.sh), so 1,000,000 nodes take about 450 MB.
 * Listing a page in id order (registry_list_nodes) is one pass over the
 * nodes (or over one index bucket), keeping the page's smallest ids in a
 * heap of the page's size.
 *
 * Nonces, rate windows and key/values: three expiring sets (lib/expset),
 * each with a hard cap on live entries; nonces and key/values also count
 * against per-signer (per-owner) and per-address quotas, so that one
 * party cannot fill a store shared by all.
 *
 * Ordered sets (the wait queue, ticket holds): a map of small arrays
 * under a mutex of their own (an empty set is dropped); each call is O(members of that set), which
 * their callers bound (queue lengths, tickets in flight).
 *
 * Keys come from the network, so the maps hash with SipHash (libsodium
 * crypto_shorthash) under a random key chosen at open.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "error.h"
#include "expset.h"
#include "registry.h"

#define NONE SIZE_MAX
#define PUT_SWEEP 64        /* expired nodes dropped per put_node */
#define HASHES_TRACKED 16   /* distinct hashes counted per model name */

static int nomem(void)
{
	return troop_error_set(TROOP_ENOMEM, "registry: out of memory");
}

/* ---- hash map: string -> pointer -------------------------------------------- */

struct sent {
	struct sent *next;
	uint64_t h;
	void *val;
	char key[];
};

struct smap {
	struct sent **b;
	size_t nb;  /* power of two */
	size_t n;
};

static uint64_t shash(const unsigned char *seed, const char *key)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;
	crypto_shorthash(out, (const unsigned char *)key, strlen(key), seed);
	memcpy(&h, out, sizeof h);
	return h;
}

static int smap_init(struct smap *m, size_t nb)
{
	m->b = calloc(nb, sizeof *m->b);
	m->nb = nb;
	m->n = 0;
	return m->b ? 0 : nomem();
}

/* Free the entries (not the values). */
static void smap_free(struct smap *m)
{
	for (size_t i = 0; m->b != NULL && i < m->nb; i++) {
		struct sent *e = m->b[i];
		while (e != NULL) {
			struct sent *next = e->next;
			free(e);
			e = next;
		}
	}
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

static struct sent *smap_find(const struct smap *m, const char *key, uint64_t h)
{
	for (struct sent *e = m->b[h & (m->nb - 1)]; e != NULL; e = e->next)
		if (e->h == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void smap_grow(struct smap *m)
{
	size_t nb = m->nb * 2;
	struct sent **b = calloc(nb, sizeof *b);
	if (b == NULL)
		return;  /* keep the old table: only slower */
	for (size_t i = 0; i < m->nb; i++) {
		struct sent *e = m->b[i];
		while (e != NULL) {
			struct sent *next = e->next;
			e->next = b[e->h & (nb - 1)];
			b[e->h & (nb - 1)] = e;
			e = next;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

/* Insert a key known to be absent.  Returns the entry or NULL (no memory). */
static struct sent *smap_add(struct smap *m, const char *key, uint64_t h, void *val)
{
	size_t klen = strlen(key);
	struct sent *e = malloc(sizeof *e + klen + 1);
	if (e == NULL)
		return NULL;
	e->h = h;
	e->val = val;
	memcpy(e->key, key, klen + 1);
	if (m->n >= m->nb)
		smap_grow(m);
	e->next = m->b[h & (m->nb - 1)];
	m->b[h & (m->nb - 1)] = e;
	m->n++;
	return e;
}

/* Unlink and free entry `e`; returns its value. */
static void *smap_del(struct smap *m, struct sent *e)
{
	struct sent **pp = &m->b[e->h & (m->nb - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	m->n--;
	void *val = e->val;
	free(e);
	return val;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- node records, packed ------------------------------------------------------ */
/*
 * A node is one allocation: struct mnode (48 bytes), its model slots
 * (16 bytes each: a shared model description and two index positions),
 * its id as a C string, then the other fields packed one after another:
 *
 *   strings   (name, ip, encryption key, seal key, owner, version) one
 *             tag byte each, then: below PK_TEXT_MAX, that many bytes of
 *             text; PK_B64, a length B and B bytes that are the string's
 *             base64url (no padding) decoding, used only when encoding them
 *             again gives the string back byte for byte (keys and the seal
 *             key statement: 155 chars in 116 bytes); PK_IPV4, 4 bytes of
 *             a dotted quad that inet_ntop writes back the same; PK_SAME_ID,
 *             nothing (an owner that is the node itself).
 *   facts     a 32-bit mask of the fields that are not zero (and of the
 *             doubles that a float holds exactly), then those fields:
 *             doubles in 4 or 8 bytes, integers as zigzag varints, the
 *             hardware class as a length byte and text; booleans are mask
 *             bits.
 *   extra     a mode byte (none, text, dictionary-coded), then varints
 *             and bytes: the heartbeat JSON with its usual keys and values
 *             ("hardware", "gpu_count", "NVIDIA GeForce RTX ", "ollama",
 *             ...) replaced by control bytes, which JSON text never holds
 *             raw (text that does is kept as it is).
 *
 * Model descriptions (name, hash, engine, size, context, capability bits)
 * are interned: every node serving the same file the same way points at
 * one refcounted struct mdesc.  Index buckets hold node pointers; each
 * slot keeps its positions in the name and hash buckets.
 */

#define PK_TEXT_MAX 0xF0u  /* tag below: that many bytes of text */
#define PK_IPV4 0xFDu
#define PK_SAME_ID 0xFEu
#define PK_B64 0xFFu
#define PK_B64_MIN 16      /* shorter strings stay text */
#define PK_BIN_MAX 160     /* decoded bytes of the longest string packed as PK_B64 */
#define POS_NONE UINT32_MAX

_Static_assert(REGISTRY_NAME_MAX < PK_TEXT_MAX && REGISTRY_SEAL_KEY_MAX < PK_TEXT_MAX &&
    REGISTRY_ID_MAX < PK_TEXT_MAX && REGISTRY_IP_MAX < PK_TEXT_MAX &&
    REGISTRY_KEY_MAX < PK_TEXT_MAX && REGISTRY_VERSION_MAX < PK_TEXT_MAX,
    "a node string's length must fit a text tag");
_Static_assert(REGISTRY_MODELS_MAX <= UINT16_MAX, "n_models is 16 bits");

struct mdesc {
	struct sent *ent;    /* its entry in descs */
	size_t refs;         /* model slots pointing here */
	int64_t size, ctx;
	uint8_t caps, caps_known, endpoints;
	const char *hash, *engine;  /* in text, after the name */
	char text[];         /* name NUL hash NUL engine NUL */
};

struct mslot {
	struct mdesc *d;
	uint32_t name_pos;   /* index in the by_name bucket, POS_NONE if not indexed */
	uint32_t hash_pos;   /* likewise in by_hash */
};

struct mnode {
	int64_t at;              /* expires at (live while now < at) */
	struct mnode *next;      /* chain in the nodes map */
	int64_t last_seen;
	uint32_t heap_pos;       /* index in node_heap */
	uint32_t hash;           /* low bits of the id's hash */
	uint32_t range_pos;      /* index in its id range (struct rbucket) */
	atomic_int active;
	int32_t max_jobs;
	uint16_t port;
	uint16_t n_models;
	uint8_t status;
	struct mslot models[];   /* then the id, NUL, and the packed fields */
};

static const char *mnode_id(const struct mnode *n)
{
	return (const char *)(n->models + n->n_models);
}

/* The order key of an id (struct iref). */
static uint64_t id_key(const char *id)
{
	uint64_t k = 0;

	for (int i = 0; i < 8; i++) {
		k <<= 8;
		if (*id)
			k |= (unsigned char)*id++;
	}
	return k;
}

static const uint8_t *mnode_fields(const struct mnode *n)
{
	const char *id = mnode_id(n);
	return (const uint8_t *)id + strlen(id) + 1;
}

static bool node_live(const struct mnode *n, int64_t now)
{
	return n->at > now;
}

/* ---- varints ---- */

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t k = 0;
	while (v >= 0x80) {
		p[k++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[k++] = (uint8_t)v;
	return k;
}

static uint64_t varint_get(const uint8_t **pp)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b = *p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
	}
	*pp = p;
	return v;
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---- strings ---- */

/* base64url without padding, for public keys and statements (no need for
 * libsodium's constant-time codec, which is several times slower). */
static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int8_t b64_vals[256];  /* -1: not a base64url char (codec_init) */

static int b64_val(unsigned char c)
{
	return b64_vals[c];
}

/* The base64url encoding of bin[0..n) into dst (4n/3 rounded up, + NUL). */
static void b64_encode(char *dst, const uint8_t *bin, size_t n)
{
	size_t k = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)bin[i] << 16 | (uint32_t)bin[i + 1] << 8 | bin[i + 2];
		dst[k++] = b64_chars[v >> 18];
		dst[k++] = b64_chars[(v >> 12) & 63];
		dst[k++] = b64_chars[(v >> 6) & 63];
		dst[k++] = b64_chars[v & 63];
	}
	if (n - i == 1) {
		dst[k++] = b64_chars[bin[i] >> 2];
		dst[k++] = b64_chars[(bin[i] & 3) << 4];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)bin[i] << 8 | bin[i + 1];
		dst[k++] = b64_chars[v >> 10];
		dst[k++] = b64_chars[(v >> 4) & 63];
		dst[k++] = b64_chars[(v & 15) << 2];
	}
	dst[k] = '\0';
}

/* Decode s (len chars) into bin if it is canonical base64url without
 * padding (b64_encode of the result gives s back): the byte count, or 0. */
static size_t b64_decode(uint8_t *bin, const char *s, size_t len)
{
	size_t k = 0;
	uint32_t acc = 0;
	int bits = 0;
	if (len % 4 == 1)
		return 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64_val((unsigned char)s[i]);
		if (v < 0)
			return 0;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			bin[k++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return acc == 0 ? k : 0;  /* stray low bits: not what encoding writes */
}

/* Pack `s` at p (room for 2 + its length); `id` is the node's id (for
 * PK_SAME_ID) or NULL.  Returns the bytes written. */
static size_t pk_put(uint8_t *p, const char *s, const char *id)
{
	size_t len = strlen(s);
	if (id != NULL && len > 0 && strcmp(s, id) == 0) {
		p[0] = PK_SAME_ID;
		return 1;
	}
	if (len >= 7 && len <= 15) {
		struct in_addr a;
		char back[INET_ADDRSTRLEN];
		if (inet_pton(AF_INET, s, &a) == 1 &&
		    inet_ntop(AF_INET, &a, back, sizeof back) != NULL && strcmp(back, s) == 0) {
			p[0] = PK_IPV4;
			memcpy(p + 1, &a, 4);
			return 5;
		}
	}
	if (len >= PK_B64_MIN && len * 3 / 4 <= PK_BIN_MAX) {
		size_t binlen = b64_decode(p + 2, s, len);
		if (binlen > 0) {
			p[0] = PK_B64;
			p[1] = (uint8_t)binlen;
			return 2 + binlen;
		}
	}
	p[0] = (uint8_t)len;
	memcpy(p + 1, s, len);
	return 1 + len;
}

/* Unpack the string at *pp into dst (cap bytes, at least the field's size
 * in registry_node: what was packed came from such a field). */
static void pk_get(char *dst, size_t cap, const uint8_t **pp, const char *id)
{
	const uint8_t *p = *pp;
	uint8_t tag = *p++;
	if (tag == PK_SAME_ID) {
		copy_str(dst, cap, id);
	} else if (tag == PK_IPV4) {
		struct in_addr a;
		memcpy(&a, p, 4);
		p += 4;
		if (cap < INET_ADDRSTRLEN || inet_ntop(AF_INET, &a, dst, (socklen_t)cap) == NULL)
			dst[0] = '\0';
	} else if (tag == PK_B64) {
		size_t binlen = *p++;
		if ((binlen * 4 + 2) / 3 < cap)
			b64_encode(dst, p, binlen);
		else
			dst[0] = '\0';
		p += binlen;
	} else {
		size_t n = tag < cap ? tag : cap - 1;
		memcpy(dst, p, n);
		dst[n] = '\0';
		p += tag;
	}
	*pp = p;
}

/* ---- facts ---- */

enum { FT_D, FT_B, FT_I, FT_N, FT_S };

static const struct {
	uint8_t type;
	uint16_t off;
} fact_fields[] = {
	{ FT_D, offsetof(registry_facts, multiplier) },
	{ FT_B, offsetof(registry_facts, verified) },
	{ FT_I, offsetof(registry_facts, verified_at) },
	{ FT_D, offsetof(registry_facts, reputation) },
	{ FT_S, offsetof(registry_facts, hw_class) },
	{ FT_B, offsetof(registry_facts, established) },
	{ FT_I, offsetof(registry_facts, pending) },
	{ FT_I, offsetof(registry_facts, disputes) },
	{ FT_I, offsetof(registry_facts, jobs) },
	{ FT_B, offsetof(registry_facts, suspended) },
	{ FT_B, offsetof(registry_facts, suspect) },
	{ FT_I, offsetof(registry_facts, audits_passed) },
	{ FT_I, offsetof(registry_facts, audits_failed) },
	{ FT_D, offsetof(registry_facts, rep_availability) },
	{ FT_D, offsetof(registry_facts, rep_reliability) },
	{ FT_D, offsetof(registry_facts, rep_speed) },
	{ FT_D, offsetof(registry_facts, rep_audits) },
	{ FT_D, offsetof(registry_facts, ttft_ms) },
	{ FT_D, offsetof(registry_facts, tokens_per_s) },
	{ FT_I, offsetof(registry_facts, failovers) },
	{ FT_N, offsetof(registry_facts, served_jobs) },
};
#define N_FACT_FIELDS (sizeof fact_fields / sizeof *fact_fields)
#define FACT_FLOAT_BIT 21   /* mask bit of the first double held as a float */
#define FACTS_PACKED_MAX (4 + 8 * 8 + 12 * 10 + 1 + REGISTRY_CLASS_MAX)
_Static_assert(N_FACT_FIELDS <= FACT_FLOAT_BIT, "facts mask: fields then float bits");

static size_t facts_pack(uint8_t *out, const registry_facts *f)
{
	uint32_t mask = 0;
	uint8_t *p = out + 4;
	int dk = 0;
	for (size_t i = 0; i < N_FACT_FIELDS; i++) {
		const char *v = (const char *)f + fact_fields[i].off;
		switch (fact_fields[i].type) {
		case FT_D: {
			double x;
			uint64_t bits;
			memcpy(&x, v, sizeof x);
			memcpy(&bits, &x, sizeof bits);
			if (bits != 0) {
				float fl = (float)x;
				mask |= 1u << i;
				if ((double)fl == x) {
					mask |= 1u << (FACT_FLOAT_BIT + dk);
					memcpy(p, &fl, sizeof fl);
					p += sizeof fl;
				} else {
					memcpy(p, &x, sizeof x);
					p += sizeof x;
				}
			}
			dk++;
			break;
		}
		case FT_B:
			if (*(const bool *)v)
				mask |= 1u << i;
			break;
		case FT_I: {
			int64_t x;
			memcpy(&x, v, sizeof x);
			if (x != 0) {
				mask |= 1u << i;
				p += varint_put(p, zigzag(x));
			}
			break;
		}
		case FT_N: {
			int x;
			memcpy(&x, v, sizeof x);
			if (x != 0) {
				mask |= 1u << i;
				p += varint_put(p, zigzag(x));
			}
			break;
		}
		case FT_S: {
			size_t len = strnlen(v, REGISTRY_CLASS_MAX);
			if (len > 0) {
				mask |= 1u << i;
				*p++ = (uint8_t)len;
				memcpy(p, v, len);
				p += len;
			}
			break;
		}
		}
	}
	for (int k = 0; k < 4; k++)
		out[k] = (uint8_t)(mask >> (8 * k));
	return (size_t)(p - out);
}

static void facts_get(registry_facts *f, const uint8_t **pp)
{
	const uint8_t *p = *pp;
	uint32_t mask = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
	int dk = 0;
	p += 4;
	memset(f, 0, sizeof *f);
	for (size_t i = 0; i < N_FACT_FIELDS; i++) {
		char *v = (char *)f + fact_fields[i].off;
		bool set = mask & (1u << i);
		switch (fact_fields[i].type) {
		case FT_D:
			if (set && (mask & (1u << (FACT_FLOAT_BIT + dk)))) {
				float fl;
				memcpy(&fl, p, sizeof fl);
				p += sizeof fl;
				*(double *)v = fl;
			} else if (set) {
				memcpy(v, p, sizeof(double));
				p += sizeof(double);
			}
			dk++;
			break;
		case FT_B:
			*(bool *)v = set;
			break;
		case FT_I:
			if (set)
				*(int64_t *)v = unzigzag(varint_get(&p));
			break;
		case FT_N:
			if (set)
				*(int *)v = (int)unzigzag(varint_get(&p));
			break;
		case FT_S:
			if (set) {
				size_t len = *p++;
				memcpy(v, p, len);
				v[len] = '\0';
				p += len;
			}
			break;
		}
	}
	*pp = p;
}

/* ---- the heartbeat's extra JSON ---- */

#define XMODE_NONE 0
#define XMODE_TEXT 1
#define XMODE_DICT 2

#define XT(s) { s, sizeof(s) - 1 }
/* Codes 1 .. 31: what proto_heartbeat_extra_encode writes most.  Each at
 * least 2 bytes, so coding never makes text longer. */
static const struct {
	const char *s;
	size_t len;
} xdict[] = {
	XT(""),
	XT("{\"hardware\":{\"gpu\":\""),
	XT("\",\"gpu_count\":"),
	XT(",\"vram_total\":"),
	XT(",\"vram_free\":"),
	XT(",\"gpu_util\":"),
	XT(",\"source\":\""),
	XT("},\"engines\":[{\"type\":\""),
	XT("\"},\"engines\":[{\"type\":\""),
	XT("\",\"version\":\""),
	XT("\",\"port\":"),
	XT("},{\"type\":\""),
	XT("}]}"),
	XT("{\"engines\":[{\"type\":\""),
	XT("NVIDIA GeForce RTX "),
	XT("NVIDIA "),
	XT("ollama"),
	XT("vllm"),
	XT("llama.cpp"),
	XT("nvml"),
	XT("nvidia-smi"),
	XT("\"}}"),
	XT("}}"),
	XT("Apple M"),
	XT("AMD Radeon "),
	XT("\"gpu\":\""),
	XT("\"gpu_count\":"),
	XT("\"},"),
	XT("\",\""),
	XT("\":\""),
	XT("\":"),
};
#undef XT
#define XDICT_N (sizeof xdict / sizeof *xdict)
_Static_assert(XDICT_N <= 32, "extra JSON codes are 1 .. 31");

static uint32_t xdict_first[256];  /* codes whose text starts with that byte */
static pthread_once_t codec_once = PTHREAD_ONCE_INIT;

static void codec_init(void)
{
	memset(b64_vals, -1, sizeof b64_vals);
	for (int i = 0; i < 64; i++)
		b64_vals[(unsigned char)b64_chars[i]] = (int8_t)i;
	for (size_t t = 1; t < XDICT_N; t++)
		xdict_first[(unsigned char)xdict[t].s[0]] |= 1u << t;
}

/* Code `s` (len bytes) into out (room for len): the coded length, or
 * NONE when s holds a byte that is a code. */
static size_t xdict_pack(uint8_t *out, const char *s, size_t len)
{
	size_t k = 0;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c < XDICT_N)
			return NONE;
		size_t best = 0, best_len = 1;
		for (uint32_t cand = xdict_first[c]; cand != 0; cand &= cand - 1) {
			size_t t = (size_t)__builtin_ctz(cand);
			if (xdict[t].len > best_len && xdict[t].len <= len - i &&
			    memcmp(s + i, xdict[t].s, xdict[t].len) == 0) {
				best = t;
				best_len = xdict[t].len;
			}
		}
		out[k++] = best ? (uint8_t)best : c;
		i += best_len;
	}
	return k;
}

/* The extra JSON at *p as a malloc'd string (NULL when none or out of
 * memory: *nomem tells). */
static char *extra_get(const uint8_t *p, bool *oom)
{
	uint8_t mode = *p++;
	*oom = false;
	if (mode == XMODE_NONE)
		return NULL;
	size_t dlen = (size_t)varint_get(&p);
	size_t clen = mode == XMODE_DICT ? (size_t)varint_get(&p) : dlen;
	char *s = malloc(dlen + 1);
	if (s == NULL) {
		*oom = true;
		return NULL;
	}
	if (mode == XMODE_TEXT) {
		memcpy(s, p, dlen);
	} else {
		size_t k = 0;
		for (size_t i = 0; i < clen; i++) {
			uint8_t c = p[i];
			if (c < XDICT_N) {
				memcpy(s + k, xdict[c].s, xdict[c].len);
				k += xdict[c].len;
			} else {
				s[k++] = (char)c;
			}
		}
	}
	s[dlen] = '\0';
	return s;
}

/* ---- expiry heap (of nodes) ------------------------------------------------------ */

struct heap {
	struct mnode **a;
	size_t n, cap;
};

static void heap_set(struct heap *h, size_t i, struct mnode *e)
{
	h->a[i] = e;
	e->heap_pos = (uint32_t)i;
}

static void heap_up(struct heap *h, size_t i)
{
	struct mnode *e = h->a[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->a[p]->at <= e->at)
			break;
		heap_set(h, i, h->a[p]);
		i = p;
	}
	heap_set(h, i, e);
}

static void heap_down(struct heap *h, size_t i)
{
	struct mnode *e = h->a[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->a[c + 1]->at < h->a[c]->at)
			c++;
		if (e->at <= h->a[c]->at)
			break;
		heap_set(h, i, h->a[c]);
		i = c;
	}
	heap_set(h, i, e);
}

static int heap_push(struct heap *h, struct mnode *e)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap + h->cap / 2 : 64;
		struct mnode **a = realloc(h->a, cap * sizeof *a);
		if (a == NULL)
			return nomem();
		h->a = a;
		h->cap = cap;
	}
	heap_set(h, h->n++, e);
	heap_up(h, h->n - 1);
	return 0;
}

static void heap_del(struct heap *h, struct mnode *e)
{
	size_t i = e->heap_pos;
	struct mnode *last = h->a[--h->n];
	if (i == h->n)
		return;
	heap_set(h, i, last);
	heap_up(h, i);
	heap_down(h, last->heap_pos);
}

/* Put `e` in old's slot and re-place it (its `at` may differ). */
static void heap_replace(struct heap *h, struct mnode *old, struct mnode *e)
{
	heap_set(h, old->heap_pos, e);
	heap_up(h, e->heap_pos);
	heap_down(h, e->heap_pos);
}

/* The node expiring first, if it has expired by `now`. */
static struct mnode *heap_expired(const struct heap *h, int64_t now)
{
	return (h->n > 0 && h->a[0]->at <= now) ? h->a[0] : NULL;
}

/* ---- the node map: id -> node, chained through mnode.next ---------------------- */

struct nmap {
	struct mnode **b;
	size_t nb;  /* power of two */
	size_t n;
};

static int nmap_init(struct nmap *m, size_t nb)
{
	m->b = calloc(nb, sizeof *m->b);
	m->nb = nb;
	m->n = 0;
	return m->b ? 0 : nomem();
}

static struct mnode *nmap_find(const struct nmap *m, const char *id, uint64_t h)
{
	for (struct mnode *e = m->b[h & (m->nb - 1)]; e != NULL; e = e->next)
		if (e->hash == (uint32_t)h && strcmp(mnode_id(e), id) == 0)
			return e;
	return NULL;
}

static void nmap_grow(struct nmap *m)
{
	size_t nb = m->nb * 2;
	if (nb > ((size_t)1 << 32))
		return;  /* the stored hash has 32 bits */
	struct mnode **b = calloc(nb, sizeof *b);
	if (b == NULL)
		return;  /* keep the old table: only slower */
	for (size_t i = 0; i < m->nb; i++) {
		struct mnode *e = m->b[i];
		while (e != NULL) {
			struct mnode *next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
			e = next;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

static void nmap_add(struct nmap *m, struct mnode *e)
{
	if (m->n >= m->nb)
		nmap_grow(m);
	e->next = m->b[e->hash & (m->nb - 1)];
	m->b[e->hash & (m->nb - 1)] = e;
	m->n++;
}

static struct mnode **nmap_link(struct nmap *m, const struct mnode *e)
{
	struct mnode **pp = &m->b[e->hash & (m->nb - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	return pp;
}

static void nmap_del(struct nmap *m, struct mnode *e)
{
	*nmap_link(m, e) = e->next;
	m->n--;
}

/* `e` takes old's place (same id). */
static void nmap_replace(struct nmap *m, struct mnode *old, struct mnode *e)
{
	e->next = old->next;
	*nmap_link(m, old) = e;
}

/* ---- the registry ---------------------------------------------------------------- */

/* A node in an index bucket, with the first 8 bytes of its id as a
 * big-endian number (zero-padded; ids hold no NUL), which orders ids as
 * strcmp does wherever two keys differ: listing a page in id order
 * compares these, in the bucket's own array, and reads a node's memory
 * only for the few that may enter the page (ties, liveness), not for all
 * the nodes of a model (50,000 cache misses for a model that 5% of a
 * million nodes serve). */
struct iref {
	uint64_t key;
	struct mnode *n;
};

struct ibucket {
	struct iref *refs;
	uint32_t n, cap;
};

/* Every node, by id range: the nodes whose id keys share their first
 * RANGE_BITS bits, in no order within a range.  Ranges follow id order,
 * so a page of all nodes in id order reads the cursor's range and the
 * next ones until the page is full, a few hundred nodes at a million
 * random ids, not every node.  (Ids made to share a range cost that
 * range's length per page, which is what every page cost before.) */
#define RANGE_BITS 16

struct rbucket {
	struct mnode **refs;
	uint32_t n, cap;
};

struct oent {
	char *member;
	int64_t score, expires;
};

/* A set's members in an array (order does not matter), found through a
 * map member -> position, so that adding, finding and removing one member
 * is O(1) however many tickets are held; expired members are swept when
 * the earliest expiry has passed (min_exp, a lower bound), so a sweep
 * comes at most once a second (times are in seconds). */
struct oset {
	struct oent *e;
	size_t n, cap;
	struct smap idx;          /* member -> position in e, as a uintptr_t */
	int64_t min_exp;          /* no member expires before this */
};

struct mem_registry {
	struct registry base;
	registry_opts opts;
	unsigned char seed[crypto_shorthash_KEYBYTES];
	pthread_rwlock_t lock;  /* guards nodes, by_name, by_hash, descs, node_heap, ranges */
	struct nmap nodes;
	struct smap by_name, by_hash;  /* -> struct ibucket */
	struct smap descs;             /* -> struct mdesc */
	struct heap node_heap;
	struct rbucket *ranges;        /* 1 << RANGE_BITS of them */
	expset *nonces, *rates, *kv;
	pthread_mutex_t sets_mu;  /* guards sets */
	struct smap sets;         /* name -> struct oset */
};

static struct mem_registry *mem_of(registry *r)
{
	return (struct mem_registry *)r;
}

/* ---- model descriptions (write lock held) ---- */

static struct mdesc *desc_get(struct mem_registry *m, const registry_model *src)
{
	/* the key: each string after its length, then the numbers (as text:
	 * map keys are C strings) */
	char key[REGISTRY_MODEL_MAX + REGISTRY_HASH_MAX + REGISTRY_ENGINE_MAX + 128];
	const char *parts[3] = { src->name, src->content_hash, src->engine };
	uint64_t nums[5] = { (uint64_t)src->size_bytes, (uint64_t)src->context_length,
		src->caps, src->caps_known, src->endpoints };
	size_t k = 0;
	for (int i = 0; i < 3; i++) {
		size_t l = strlen(parts[i]);
		key[k++] = (char)('0' + l / 100);
		key[k++] = (char)('0' + l / 10 % 10);
		key[k++] = (char)('0' + l % 10);
		memcpy(key + k, parts[i], l);
		k += l;
	}
	for (int i = 0; i < 5; i++) {
		key[k++] = '/';
		do {
			key[k++] = (char)('0' + nums[i] % 10);
			nums[i] /= 10;
		} while (nums[i] != 0);
	}
	key[k] = '\0';
	uint64_t h = shash(m->seed, key);
	struct sent *e = smap_find(&m->descs, key, h);
	if (e != NULL) {
		struct mdesc *d = e->val;
		d->refs++;
		return d;
	}
	size_t ln = strlen(src->name) + 1, lh = strlen(src->content_hash) + 1;
	size_t le = strlen(src->engine) + 1;
	struct mdesc *d = malloc(sizeof *d + ln + lh + le);
	if (d == NULL)
		return NULL;
	memcpy(d->text, src->name, ln);
	memcpy(d->text + ln, src->content_hash, lh);
	memcpy(d->text + ln + lh, src->engine, le);
	d->hash = d->text + ln;
	d->engine = d->text + ln + lh;
	d->size = src->size_bytes;
	d->ctx = src->context_length;
	d->caps = (uint8_t)src->caps;
	d->caps_known = (uint8_t)src->caps_known;
	d->endpoints = (uint8_t)src->endpoints;
	d->refs = 1;
	if ((d->ent = smap_add(&m->descs, key, h, d)) == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

static void desc_put(struct mem_registry *m, struct mdesc *d)
{
	if (d != NULL && --d->refs == 0) {
		smap_del(&m->descs, d->ent);
		free(d);
	}
}

static bool desc_is(const struct mdesc *d, const registry_model *src)
{
	return d->size == src->size_bytes && d->ctx == src->context_length &&
	    d->caps == src->caps && d->caps_known == src->caps_known &&
	    d->endpoints == src->endpoints && strcmp(d->text, src->name) == 0 &&
	    strcmp(d->hash, src->content_hash) == 0 && strcmp(d->engine, src->engine) == 0;
}

/* Point node n's slots at the descriptions of `models` (its record's);
 * `old` (may be NULL), the node's previous record, usually lists the same
 * (a heartbeat repeats its models): its descriptions are taken without a
 * look-up.  On failure none is held. */
static int node_intern(struct mem_registry *m, struct mnode *n, const registry_model *models,
    const struct mnode *old)
{
	for (size_t i = 0; i < n->n_models; i++) {
		if (old != NULL && i < old->n_models && desc_is(old->models[i].d, &models[i])) {
			n->models[i].d = old->models[i].d;
			n->models[i].d->refs++;
			continue;
		}
		if ((n->models[i].d = desc_get(m, &models[i])) == NULL) {
			for (size_t j = 0; j < i; j++) {
				desc_put(m, n->models[j].d);
				n->models[j].d = NULL;
			}
			return nomem();
		}
	}
	return 0;
}

/* Free a node (write lock held when its slots hold descriptions). */
static void mnode_free(struct mem_registry *m, struct mnode *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->n_models; i++)
		desc_put(m, n->models[i].d);
	free(n);
}

/* Build a node from a validated record, outside any lock; its slots hold
 * no description yet (node_intern). */
static struct mnode *mnode_build(const registry_node *rec, int64_t at, int64_t last_seen)
{
	uint8_t fix[6 * (2 + PK_TEXT_MAX) + FACTS_PACKED_MAX];
	uint8_t *p = fix;
	p += pk_put(p, rec->name, NULL);
	p += pk_put(p, rec->ip, NULL);
	p += pk_put(p, rec->encryption_public_key, NULL);
	p += pk_put(p, rec->seal_key, NULL);
	p += pk_put(p, rec->owner, rec->node_id);
	p += pk_put(p, rec->version, NULL);
	p += facts_pack(p, &rec->facts);
	size_t flen = (size_t)(p - fix), idlen = strlen(rec->node_id) + 1;

	uint8_t *x = NULL, mode = XMODE_NONE, vb[20];
	size_t xraw = 0, xlen = 0, vlen = 0;
	if (rec->extra_json != NULL) {
		xraw = strlen(rec->extra_json);
		if ((x = malloc(xraw + 1)) == NULL)
			return NULL;
		xlen = xdict_pack(x, rec->extra_json, xraw);
		mode = XMODE_DICT;
		if (xlen == NONE) {
			mode = XMODE_TEXT;
			xlen = xraw;
			memcpy(x, rec->extra_json, xraw);
		}
		vlen = varint_put(vb, xraw);
		if (mode == XMODE_DICT)
			vlen += varint_put(vb + vlen, xlen);
	}

	size_t head = sizeof(struct mnode) + rec->n_models * sizeof(struct mslot);
	struct mnode *n = malloc(head + idlen + flen + 1 + vlen + xlen);
	if (n == NULL) {
		free(x);
		return NULL;
	}
	memset(n, 0, head);
	n->n_models = (uint16_t)rec->n_models;
	for (size_t i = 0; i < rec->n_models; i++)
		n->models[i].name_pos = n->models[i].hash_pos = POS_NONE;
	n->range_pos = POS_NONE;
	uint8_t *q = (uint8_t *)n + head;
	memcpy(q, rec->node_id, idlen);
	q += idlen;
	memcpy(q, fix, flen);
	q += flen;
	*q++ = mode;
	memcpy(q, vb, vlen);
	q += vlen;
	if (xlen > 0)
		memcpy(q, x, xlen);
	free(x);
	n->at = at;
	n->last_seen = last_seen;
	n->port = (uint16_t)rec->port;
	n->max_jobs = rec->max_jobs;
	n->status = (uint8_t)rec->status;
	atomic_init(&n->active, rec->active_jobs);
	return n;
}

/* Copy a node out for a caller.  Under (at least) the read lock. */
static int mnode_export(registry_node *out, const struct mnode *n, unsigned with)
{
	memset(out, 0, sizeof *out);
	copy_str(out->node_id, sizeof out->node_id, mnode_id(n));
	const uint8_t *p = mnode_fields(n);
	pk_get(out->name, sizeof out->name, &p, out->node_id);
	pk_get(out->ip, sizeof out->ip, &p, out->node_id);
	pk_get(out->encryption_public_key, sizeof out->encryption_public_key, &p, out->node_id);
	pk_get(out->seal_key, sizeof out->seal_key, &p, out->node_id);
	pk_get(out->owner, sizeof out->owner, &p, out->node_id);
	pk_get(out->version, sizeof out->version, &p, out->node_id);
	facts_get(&out->facts, &p);
	out->port = n->port;
	out->status = (node_status)n->status;
	out->active_jobs = atomic_load(&((struct mnode *)n)->active);
	out->max_jobs = n->max_jobs;
	out->last_seen = n->last_seen;
	out->expires_at = n->at;
	if ((with & REGISTRY_WITH_MODELS) && n->n_models > 0) {
		out->models = malloc(n->n_models * sizeof *out->models);
		if (out->models == NULL)
			goto fail;
		out->n_models = n->n_models;
		for (size_t i = 0; i < n->n_models; i++) {
			registry_model *m = &out->models[i];
			const struct mdesc *d = n->models[i].d;
			copy_str(m->name, sizeof m->name, d->text);
			copy_str(m->content_hash, sizeof m->content_hash, d->hash);
			copy_str(m->engine, sizeof m->engine, d->engine);
			m->size_bytes = d->size;
			m->context_length = d->ctx;
			m->caps = d->caps;
			m->caps_known = d->caps_known;
			m->endpoints = d->endpoints;
		}
	}
	if (with & REGISTRY_WITH_EXTRA) {
		bool oom;
		out->extra_json = extra_get(p, &oom);
		if (oom)
			goto fail;
	}
	return 0;
fail:
	registry_node_clear(out);
	return nomem();
}

/* ---- the model index (write lock held) ----------------------------------------- */

static uint32_t *slot_pos(struct mnode *n, size_t mi, bool by_name)
{
	return by_name ? &n->models[mi].name_pos : &n->models[mi].hash_pos;
}

static const char *slot_key(const struct mnode *n, size_t mi, bool by_name)
{
	return by_name ? n->models[mi].d->text : n->models[mi].d->hash;
}

/* The slot of node n indexed at position `pos` of the bucket of `key`. */
static size_t slot_at(const struct mnode *n, bool by_name, const char *key, uint32_t pos)
{
	for (size_t i = 0; i < n->n_models; i++) {
		uint32_t p = by_name ? n->models[i].name_pos : n->models[i].hash_pos;
		if (p == pos && strcmp(slot_key(n, i, by_name), key) == 0)
			return i;
	}
	return NONE;  /* cannot happen */
}

static int index_add(struct mem_registry *m, struct smap *idx, bool by_name, const char *key,
    struct mnode *n, size_t mi)
{
	uint64_t h = shash(m->seed, key);
	struct sent *e = smap_find(idx, key, h);
	struct ibucket *b;
	if (e == NULL) {
		b = calloc(1, sizeof *b);
		if (b == NULL || smap_add(idx, key, h, b) == NULL) {
			free(b);
			return nomem();
		}
	} else {
		b = e->val;
	}
	if (b->n == b->cap) {
		uint32_t cap = b->cap ? b->cap + b->cap / 2 + 1 : 2;
		struct iref *refs = b->cap >= UINT32_MAX / 2 ? NULL :
		    realloc(b->refs, cap * sizeof *refs);
		if (refs == NULL) {
			if (b->n == 0) {  /* just made: do not leave an empty bucket */
				smap_del(idx, smap_find(idx, key, h));
				free(b->refs);
				free(b);
			}
			return nomem();
		}
		b->refs = refs;
		b->cap = cap;
	}
	b->refs[b->n] = (struct iref){ id_key(mnode_id(n)), n };
	*slot_pos(n, mi, by_name) = b->n++;
	return 0;
}

static void index_del(struct mem_registry *m, struct smap *idx, bool by_name, struct mnode *n,
    size_t mi)
{
	uint32_t *pos = slot_pos(n, mi, by_name);
	if (*pos == POS_NONE)
		return;
	const char *key = slot_key(n, mi, by_name);
	struct sent *e = smap_find(idx, key, shash(m->seed, key));
	if (e == NULL)
		return;  /* cannot happen */
	struct ibucket *b = e->val;
	uint32_t i = *pos;
	*pos = POS_NONE;
	struct iref last = b->refs[--b->n];
	if (i != b->n) {
		size_t lmi = slot_at(last.n, by_name, key, b->n);
		b->refs[i] = last;
		if (lmi != NONE)
			*slot_pos(last.n, lmi, by_name) = i;
	}
	if (b->n == 0) {
		smap_del(idx, e);
		free(b->refs);
		free(b);
	} else if (b->cap > 16 && b->n < b->cap / 4) {
		uint32_t cap = b->cap / 2;
		struct iref *refs = realloc(b->refs, cap * sizeof *refs);
		if (refs != NULL) {
			b->refs = refs;
			b->cap = cap;
		}
	}
}

static struct rbucket *range_of(struct mem_registry *m, const struct mnode *n)
{
	return &m->ranges[id_key(mnode_id(n)) >> (64 - RANGE_BITS)];
}

static int range_add(struct mem_registry *m, struct mnode *n)
{
	struct rbucket *b = range_of(m, n);

	if (b->n == b->cap) {
		uint32_t cap = b->cap ? b->cap + b->cap / 2 + 1 : 4;
		struct mnode **refs = b->cap >= UINT32_MAX / 2 ? NULL :
		    realloc(b->refs, cap * sizeof *refs);
		if (refs == NULL)
			return nomem();
		b->refs = refs;
		b->cap = cap;
	}
	b->refs[b->n] = n;
	n->range_pos = b->n++;
	return 0;
}

static void range_del(struct mem_registry *m, struct mnode *n)
{
	if (n->range_pos == POS_NONE)
		return;
	struct rbucket *b = range_of(m, n);
	uint32_t i = n->range_pos;
	n->range_pos = POS_NONE;
	struct mnode *last = b->refs[--b->n];
	if (i != b->n) {
		b->refs[i] = last;
		last->range_pos = i;
	}
	if (b->n == 0) {
		free(b->refs);
		b->refs = NULL;
		b->cap = 0;
	} else if (b->cap > 16 && b->n < b->cap / 4) {
		uint32_t cap = b->cap / 2;
		struct mnode **refs = realloc(b->refs, cap * sizeof *refs);
		if (refs != NULL) {
			b->refs = refs;
			b->cap = cap;
		}
	}
}

static void node_unindex(struct mem_registry *m, struct mnode *n)
{
	for (size_t i = 0; i < n->n_models; i++) {
		index_del(m, &m->by_name, true, n, i);
		index_del(m, &m->by_hash, false, n, i);
	}
	range_del(m, n);
}

/* Index every model name and hash once per node.  On failure nothing of
 * this node stays indexed. */
static int node_index(struct mem_registry *m, struct mnode *n)
{
	for (size_t i = 0; i < n->n_models; i++) {
		const struct mdesc *d = n->models[i].d;
		bool name_dup = false, hash_dup = d->hash[0] == '\0';
		for (size_t j = 0; j < i && !(name_dup && hash_dup); j++) {
			const struct mdesc *o = n->models[j].d;
			if (!name_dup && (o == d || strcmp(o->text, d->text) == 0))
				name_dup = true;
			if (!hash_dup && (o == d || strcmp(o->hash, d->hash) == 0))
				hash_dup = true;
		}
		int err = 0;
		if (!name_dup)
			err = index_add(m, &m->by_name, true, d->text, n, i);
		if (err == 0 && !hash_dup)
			err = index_add(m, &m->by_hash, false, d->hash, n, i);
		if (err) {
			node_unindex(m, n);
			return err;
		}
	}
	int err = range_add(m, n);
	if (err)
		node_unindex(m, n);
	return err;
}

/* Take node `n` out of every structure and free it. */
static void node_drop(struct mem_registry *m, struct mnode *n)
{
	node_unindex(m, n);
	nmap_del(&m->nodes, n);
	heap_del(&m->node_heap, n);
	mnode_free(m, n);
}

static size_t sweep_nodes(struct mem_registry *m, int64_t now, size_t limit)
{
	size_t k = 0;
	struct mnode *n;
	while (k < limit && (n = heap_expired(&m->node_heap, now)) != NULL) {
		node_drop(m, n);
		k++;
	}
	return k;
}

/* Node n (interned, not indexed) takes old's place in the map and the
 * heap; old is freed.  Then n is indexed: on failure it is dropped. */
static int node_swap(struct mem_registry *m, struct mnode *old, struct mnode *n)
{
	node_unindex(m, old);
	nmap_replace(&m->nodes, old, n);
	heap_replace(&m->node_heap, old, n);
	mnode_free(m, old);
	int err = node_index(m, n);
	if (err != 0)
		node_drop(m, n);
	return err;
}

static int mem_put_node(registry *r, const registry_node *rec, int64_t ttl, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	struct mnode *n = mnode_build(rec, now + ttl, now);
	if (n == NULL)
		return nomem();
	uint64_t h = shash(m->seed, rec->node_id);
	int err = 0;
	n->hash = (uint32_t)h;

	pthread_rwlock_wrlock(&m->lock);
	sweep_nodes(m, now, PUT_SWEEP);
	struct mnode *old = nmap_find(&m->nodes, rec->node_id, h);
	if (old == NULL && m->nodes.n >= m->opts.max_nodes) {
		err = troop_error_set(TROOP_EUNAVAIL, "registry full: %zu live nodes",
		    m->nodes.n);
		goto out;
	}
	if ((err = node_intern(m, n, rec->models, old)) != 0)
		goto out;
	if (old != NULL) {
		err = node_swap(m, old, n);
		n = NULL;  /* owned by the registry, or freed */
		goto out;
	}
	nmap_add(&m->nodes, n);
	if ((err = heap_push(&m->node_heap, n)) != 0) {
		nmap_del(&m->nodes, n);
		goto out;
	}
	if ((err = node_index(m, n)) != 0)
		node_drop(m, n);
	n = NULL;  /* owned by the registry, or freed */
out:
	mnode_free(m, n);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static int mem_remove_node(registry *r, const char *node_id)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err = 0;
	pthread_rwlock_wrlock(&m->lock);
	struct mnode *n = nmap_find(&m->nodes, node_id, h);
	if (n != NULL)
		node_drop(m, n);
	else
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static int mem_get_node(registry_node *out, registry *r, const char *node_id, int64_t now,
    unsigned with)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err;
	pthread_rwlock_rdlock(&m->lock);
	struct mnode *n = nmap_find(&m->nodes, node_id, h);
	if (n != NULL && node_live(n, now))
		err = mnode_export(out, n, with);
	else
		err = troop_error_set(TROOP_ENOTFOUND, "no live node %s", node_id);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

/* Append node `n` to the output array (capacity checked by the caller). */
static int collect(registry_node *arr, size_t *k, const struct mnode *n, unsigned with)
{
	int err = mnode_export(&arr[*k], n, with);
	if (err == 0)
		(*k)++;
	return err;
}

/* The index bucket of `model` (by name, else by hash), or NULL. */
static const struct ibucket *bucket_of(struct mem_registry *m, const char *model)
{
	uint64_t h = shash(m->seed, model);
	struct sent *e = smap_find(&m->by_name, model, h);
	if (e == NULL)
		e = smap_find(&m->by_hash, model, h);
	return e != NULL ? e->val : NULL;
}

static int mem_find_nodes(registry_node **out, size_t *nout, registry *r, const char *model,
    int64_t now, size_t max, unsigned with)
{
	struct mem_registry *m = mem_of(r);
	registry_node *arr = NULL;
	size_t k = 0;
	int err = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (model == NULL) {
		size_t cap = m->nodes.n < max ? m->nodes.n : max;
		if (cap == 0)
			goto out;
		if ((arr = calloc(cap, sizeof *arr)) == NULL) {
			err = nomem();
			goto out;
		}
		/* start at a random bucket so a capped listing is not always the same */
		size_t start = randombytes_uniform((uint32_t)(m->nodes.nb > UINT32_MAX ?
		    UINT32_MAX : m->nodes.nb));
		for (size_t i = 0; i < m->nodes.nb && k < cap && err == 0; i++) {
			for (const struct mnode *n = m->nodes.b[(start + i) & (m->nodes.nb - 1)];
			    n != NULL && k < cap && err == 0; n = n->next)
				if (node_live(n, now))
					err = collect(arr, &k, n, with);
		}
		goto out;
	}

	const struct ibucket *b = bucket_of(m, model);
	if (b == NULL || b->n == 0)
		goto out;
	size_t cap = b->n < max ? b->n : max;
	if ((arr = calloc(cap, sizeof *arr)) == NULL) {
		err = nomem();
		goto out;
	}
	size_t start = b->n > max ? randombytes_uniform(b->n) : 0;
	for (size_t i = 0; i < b->n && k < cap && err == 0; i++) {
		const struct mnode *n = b->refs[(start + i) % b->n].n;
		if (node_live(n, now))
			err = collect(arr, &k, n, with);
	}
out:
	pthread_rwlock_unlock(&m->lock);
	if (err != 0 || k == 0) {
		registry_nodes_free(arr, k);
		arr = NULL;
		k = 0;
	}
	*out = arr;
	*nout = k;
	return err;
}

/* ---- listing in id order ---------------------------------------------------- */

/* The `cap` smallest ids after a cursor, as a max-heap on node_id: the
 * root is the largest kept, replaced by any smaller candidate. */
struct idheap {
	struct iref *a;
	size_t n, cap;
};

/* Compare two ids by their keys, the whole ids only when the keys tie. */
static int id_cmp(const struct iref *a, const struct iref *b)
{
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return strcmp(mnode_id(a->n), mnode_id(b->n));
}

static void idheap_down(struct idheap *h, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, big = i;
		if (l < h->n && id_cmp(&h->a[l], &h->a[big]) > 0)
			big = l;
		if (r < h->n && id_cmp(&h->a[r], &h->a[big]) > 0)
			big = r;
		if (big == i)
			return;
		struct iref t = h->a[i];
		h->a[i] = h->a[big];
		h->a[big] = t;
		i = big;
	}
}

static void idheap_offer(struct idheap *h, const struct iref *x)
{
	if (h->n < h->cap) {
		size_t i = h->n++;
		h->a[i] = *x;
		while (i > 0 && id_cmp(&h->a[(i - 1) / 2], &h->a[i]) < 0) {
			struct iref t = h->a[i];
			h->a[i] = h->a[(i - 1) / 2];
			h->a[(i - 1) / 2] = t;
			i = (i - 1) / 2;
		}
	} else {
		h->a[0] = *x;
		idheap_down(h, 0);
	}
}

static int cmp_iref(const void *a, const void *b)
{
	return id_cmp(a, b);
}

/* The cursor of a listing: its id and that id's key. */
struct after {
	const char *id;   /* NULL: from the first */
	uint64_t key;
};

/* Offer node x to the page: after the cursor, smaller than the page's
 * largest so far (when full), and live.  The keys settle most candidates
 * without reading the node. */
static void list_offer(struct idheap *h, const struct iref *x, const struct after *after,
    int64_t now)
{
	if (after->id != NULL && (x->key < after->key ||
	    (x->key == after->key && strcmp(mnode_id(x->n), after->id) <= 0)))
		return;
	if (h->n == h->cap && id_cmp(x, &h->a[0]) >= 0)
		return;
	if (node_live(x->n, now))
		idheap_offer(h, x);
}

static int mem_list_nodes(registry_node **out, size_t *nout, registry *r, const char *model,
    const char *after, int64_t now, size_t max, unsigned with)
{
	struct mem_registry *m = mem_of(r);
	struct idheap h = { NULL, 0, 0 };
	registry_node *arr = NULL;
	const struct ibucket *b = NULL;
	struct after cur = { after && after[0] ? after : NULL, 0 };
	size_t k = 0;
	int err = 0;

	if (cur.id)
		cur.key = id_key(cur.id);
	pthread_rwlock_rdlock(&m->lock);
	if (model != NULL && (b = bucket_of(m, model)) == NULL)
		goto out;
	h.cap = b != NULL ? b->n : m->nodes.n;
	if (h.cap > max)
		h.cap = max;
	if (h.cap == 0)
		goto out;
	if ((h.a = malloc(h.cap * sizeof *h.a)) == NULL) {
		err = nomem();
		goto out;
	}
	if (b != NULL) {
		for (size_t i = 0; i < b->n; i++)
			list_offer(&h, &b->refs[i], &cur, now);
	} else {
		/* the cursor's range, then the next ones until the page is full:
		 * the ranges after that hold only larger ids */
		for (size_t ri = cur.id ? cur.key >> (64 - RANGE_BITS) : 0;
		    ri < (size_t)1 << RANGE_BITS && h.n < h.cap; ri++) {
			const struct rbucket *rb = &m->ranges[ri];
			for (size_t i = 0; i < rb->n; i++) {
				struct mnode *n = rb->refs[i];
				list_offer(&h, &(struct iref){ id_key(mnode_id(n)), n }, &cur, now);
			}
		}
	}
	if (h.n == 0)
		goto out;
	qsort(h.a, h.n, sizeof *h.a, cmp_iref);
	if ((arr = calloc(h.n, sizeof *arr)) == NULL) {
		err = nomem();
		goto out;
	}
	for (size_t i = 0; i < h.n && err == 0; i++)
		err = collect(arr, &k, h.a[i].n, with);
out:
	pthread_rwlock_unlock(&m->lock);
	free(h.a);
	if (err != 0 || k == 0) {
		registry_nodes_free(arr, k);
		arr = NULL;
		k = 0;
	}
	*out = arr;
	*nout = k;
	return err;
}

struct hash_tally {
	const char *hash;
	int64_t size;
	size_t count;
};

static int cmp_model_info(const void *a, const void *b)
{
	return strcmp(((const registry_model_info *)a)->name,
	    ((const registry_model_info *)b)->name);
}

/* One model name's aggregate over its live nodes into *mi (its name set
 * already): false when none is live.  Under (at least) the read lock. */
static bool model_aggregate(registry_model_info *mi, const struct sent *e, int64_t now)
{
	const struct ibucket *b = e->val;
	struct hash_tally t[HASHES_TRACKED];
	size_t nt = 0, live = 0;
	int64_t ctx = 0;
	uint32_t caps = 0, eps = 0;

	for (uint32_t j = 0; j < b->n; j++) {
		const struct mnode *n = b->refs[j].n;
		if (!node_live(n, now))
			continue;
		size_t mi_slot = slot_at(n, true, e->key, j);
		if (mi_slot == NONE)
			continue;  /* cannot happen */
		live++;
		const struct mdesc *mm = n->models[mi_slot].d;
		size_t x = 0;
		if (mm->ctx > ctx)
			ctx = mm->ctx;
		caps |= (uint32_t)(mm->caps & mm->caps_known);
		eps |= mm->endpoints;
		while (x < nt && strcmp(t[x].hash, mm->hash) != 0)
			x++;
		if (x == nt && nt < HASHES_TRACKED)
			t[nt++] = (struct hash_tally){ mm->hash, mm->size, 0 };
		if (x < nt)
			t[x].count++;
	}
	if (live == 0)
		return false;
	/* the hash most nodes report; among equals, a non-empty one */
	size_t best = 0;
	for (size_t x = 1; x < nt; x++)
		if (t[x].count > t[best].count ||
		    (t[x].count == t[best].count && t[best].hash[0] == '\0'))
			best = x;
	if (nt > 0) {
		copy_str(mi->content_hash, sizeof mi->content_hash, t[best].hash);
		mi->size_bytes = t[best].size;
	}
	mi->node_count = live;
	mi->context_length = ctx;
	mi->caps = caps;
	mi->endpoints = eps;
	return true;
}

/* Every model's aggregate is a pass over every live node (90 ms at 1M
 * nodes here): the read lock is taken per model name, not for the whole
 * pass, so that a heartbeat waiting for the write lock (and every reader
 * queued behind it: the lock prefers writers) waits for one model's nodes
 * at most.  A model put or dropped meanwhile may be missed or left out:
 * the list is as of some instant of the pass. */
static int mem_models(registry_model_info **out, size_t *nout, registry *r, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	registry_model_info *arr = NULL;
	size_t names = 0, k = 0;
	int err = 0;

	pthread_rwlock_rdlock(&m->lock);
	if (m->by_name.n > 0 && (arr = calloc(m->by_name.n, sizeof *arr)) == NULL)
		err = nomem();
	for (size_t i = 0; err == 0 && i < m->by_name.nb; i++)
		for (struct sent *e = m->by_name.b[i]; e != NULL; e = e->next)
			copy_str(arr[names++].name, sizeof arr->name, e->key);
	pthread_rwlock_unlock(&m->lock);
	for (size_t i = 0; err == 0 && i < names; i++) {
		registry_model_info mi = { 0 };
		memcpy(mi.name, arr[i].name, sizeof mi.name);
		pthread_rwlock_rdlock(&m->lock);
		const struct sent *e = smap_find(&m->by_name, mi.name, shash(m->seed, mi.name));
		bool live = e != NULL && model_aggregate(&mi, e, now);
		pthread_rwlock_unlock(&m->lock);
		if (live)
			arr[k++] = mi;   /* k <= i: the names not yet read stay ahead */
	}
	if (err != 0 || k == 0) {
		free(arr);
		arr = NULL;
		k = 0;
	} else {
		qsort(arr, k, sizeof *arr, cmp_model_info);
	}
	*out = arr;
	*nout = k;
	return err;
}

static int mem_add_active_job(registry *r, const char *node_id, int delta)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	int err = 0;
	pthread_rwlock_rdlock(&m->lock);
	struct mnode *n = nmap_find(&m->nodes, node_id, h);
	if (n != NULL) {
		int cur = atomic_load(&n->active), next;
		do {
			int64_t v = (int64_t)cur + delta;
			next = v < 0 ? 0 : v > INT32_MAX ? INT32_MAX : (int)v;
		} while (!atomic_compare_exchange_weak(&n->active, &cur, next));
	} else {
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	}
	pthread_rwlock_unlock(&m->lock);
	return err;
}

/* Facts are packed with the record: the node is rebuilt with the new ones
 * and takes the old one's place (expiry, last_seen, active jobs kept). */
static int mem_set_facts(registry *r, const char *node_id, const registry_facts *f,
    int64_t now)
{
	struct mem_registry *m = mem_of(r);
	uint64_t h = shash(m->seed, node_id);
	registry_node rec;
	int err = 0;
	pthread_rwlock_wrlock(&m->lock);
	struct mnode *old = nmap_find(&m->nodes, node_id, h), *n = NULL;
	if (old == NULL || !node_live(old, now)) {
		err = troop_error_set(TROOP_ENOTFOUND, "no live node %s", node_id);
		goto out;
	}
	if ((err = mnode_export(&rec, old, REGISTRY_WITH_ALL)) != 0)
		goto out;
	rec.facts = *f;
	if ((n = mnode_build(&rec, old->at, old->last_seen)) == NULL) {
		registry_node_clear(&rec);
		err = nomem();
		goto out;
	}
	n->hash = old->hash;
	atomic_store(&n->active, atomic_load(&old->active));
	err = node_intern(m, n, rec.models, old);
	registry_node_clear(&rec);
	if (err != 0) {
		mnode_free(m, n);
		goto out;
	}
	err = node_swap(m, old, n);
out:
	pthread_rwlock_unlock(&m->lock);
	return err;
}

/* Entries at or below heap position i that have expired (at <= now): the
 * heap is a min-heap on expiry, so a live entry's subtree is all live and
 * is not visited; O(expired entries), not O(nodes).  Recursion depth: the
 * heap's height. */
static size_t heap_expired_count(const struct heap *h, size_t i, int64_t now)
{
	if (i >= h->n || h->a[i]->at > now)
		return 0;
	return 1 + heap_expired_count(h, 2 * i + 1, now) + heap_expired_count(h, 2 * i + 2, now);
}

static int mem_count_nodes(size_t *out, registry *r, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	pthread_rwlock_rdlock(&m->lock);
	*out = m->node_heap.n - heap_expired_count(&m->node_heap, 0, now);
	pthread_rwlock_unlock(&m->lock);
	return 0;
}


/* ---- nonces, rate windows, key/values ---------------------------------------- */

static int mem_nonce_check(registry *r, const char *keyid, const char *nonce,
    const char *addr, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	const char *owners[EXPSET_OWNERS] = { keyid, addr };
	char key[2 * REGISTRY_NONCE_PART_MAX + 2];
	int err;

	snprintf(key, sizeof key, "%s\x1f%s", keyid, nonce);
	err = expset_put(m->nonces, key, owners, NULL, 0, now + REGISTRY_NONCE_WINDOW,
	    EXPSET_NX, now);
	if (err == TROOP_ECONFLICT)
		return troop_error_set(TROOP_EAUTH, "nonce already used");
	if (err == TROOP_EUNAVAIL)
		return troop_error_set(TROOP_ERATE, "registry: too many live nonces");
	return err;
}

static int mem_rate_check(registry *r, const char *key, int64_t window_s, int64_t max,
    int64_t now)
{
	struct mem_registry *m = mem_of(r);
	int64_t count = 0;
	int err = expset_incr(&count, m->rates, key, NULL, 1, now + window_s, now);

	if (err == TROOP_EUNAVAIL)
		return troop_error_set(TROOP_ERATE, "registry: too many live rate-limit keys");
	if (err == 0 && count > max)
		err = troop_error_set(TROOP_ERATE, "rate limit: %lld per %lld s",
		    (long long)max, (long long)window_s);
	return err;
}

static int mem_kv_put(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, const char *owner, const char *addr, int64_t now)
{
	const char *owners[EXPSET_OWNERS] = { owner, addr };

	return expset_put(mem_of(r)->kv, key, owners, value, len, now + ttl_s,
	    (flags & REGISTRY_KV_NX) ? EXPSET_NX : 0, now);
}

static int mem_kv_get(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now, bool take)
{
	return expset_get(buf, cap, len, mem_of(r)->kv, key, now, take);
}

static int mem_sweep(size_t *removed, registry *r, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	pthread_rwlock_wrlock(&m->lock);
	size_t k = sweep_nodes(m, now, SIZE_MAX);
	pthread_rwlock_unlock(&m->lock);
	k += expset_sweep(m->nonces, now);
	k += expset_sweep(m->rates, now);
	k += expset_sweep(m->kv, now);
	*removed = k;
	return 0;
}

/* ---- lifetime ------------------------------------------------------------- */

static void free_bucket_map(struct smap *idx)
{
	for (size_t i = 0; idx->b != NULL && i < idx->nb; i++)
		for (struct sent *e = idx->b[i]; e != NULL; e = e->next) {
			struct ibucket *b = e->val;
			free(b->refs);
			free(b);
		}
	smap_free(idx);
}

/* ---- ordered sets ------------------------------------------------------------- */

/* Take member i out of o (the last member moves into its place) and
 * return its string, which the caller frees or keeps.  Under sets_mu. */
static char *oset_del_at(struct mem_registry *m, struct oset *o, size_t i)
{
	char *member = o->e[i].member;
	struct sent *e = smap_find(&o->idx, member, shash(m->seed, member));

	if (e != NULL)
		smap_del(&o->idx, e);
	o->e[i] = o->e[--o->n];
	if (i < o->n) {
		const char *moved = o->e[i].member;

		e = smap_find(&o->idx, moved, shash(m->seed, moved));
		if (e != NULL)
			e->val = (void *)(uintptr_t)i;
	}
	if (o->n == 0)
		o->min_exp = INT64_MAX;
	return member;
}

/* The set named `name` (created when `create`), or NULL.  Expired members
 * are dropped first unless `keep_expired`.  Under sets_mu. */
static struct oset *oset_get(struct mem_registry *m, const char *name, bool create,
    int64_t now, bool keep_expired)
{
	uint64_t h = shash(m->seed, name);
	struct sent *e = smap_find(&m->sets, name, h);
	struct oset *o = e ? e->val : NULL;

	if (o == NULL && create) {
		o = calloc(1, sizeof *o);
		if (o == NULL || smap_init(&o->idx, 8) != 0) {
			free(o);
			return NULL;
		}
		o->min_exp = INT64_MAX;
		if (smap_add(&m->sets, name, h, o) == NULL) {
			smap_free(&o->idx);
			free(o);
			return NULL;
		}
	}
	if (o != NULL && !keep_expired && o->min_exp <= now) {
		int64_t min = INT64_MAX;

		for (size_t i = 0; i < o->n;) {
			if (o->e[i].expires > now) {
				if (o->e[i].expires < min)
					min = o->e[i].expires;
				i++;
			} else {
				free(oset_del_at(m, o, i));
			}
		}
		o->min_exp = min;
	}
	return o;
}

/* Drop set `name` (o) if it is empty (keeps the map small).  Under sets_mu. */
static void oset_gc(struct mem_registry *m, const char *name, struct oset *o)
{
	if (o == NULL || o->n > 0)
		return;
	struct sent *e = smap_find(&m->sets, name, shash(m->seed, name));
	if (e != NULL && e->val == o) {
		smap_del(&m->sets, e);
		smap_free(&o->idx);
		free(o->e);
		free(o);
	}
}

static ssize_t oset_find(const struct mem_registry *m, const struct oset *o,
    const char *member)
{
	const struct sent *e = o != NULL ? smap_find(&o->idx, member, shash(m->seed, member)) :
	    NULL;

	return e != NULL ? (ssize_t)(uintptr_t)e->val : -1;
}

static int mem_set_add(registry *r, const char *set, const char *member, int64_t score,
    int64_t expires, size_t max, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, true, now, false);
	ssize_t at = oset_find(m, o, member);
	if (o == NULL) {
		err = nomem();
	} else if (at >= 0) {
		o->e[at].score = score;
		o->e[at].expires = expires;
		if (expires < o->min_exp)
			o->min_exp = expires;
	} else if (o->n >= max) {
		err = troop_error_set(TROOP_ERATE, "registry: set %.64s is full (%zu)", set, max);
	} else {
		if (o->n == o->cap) {
			size_t cap = o->cap ? o->cap * 2 : 8;
			struct oent *e = realloc(o->e, cap * sizeof *e);
			if (e == NULL) {
				err = nomem();
				goto out;
			}
			o->e = e;
			o->cap = cap;
		}
		char *dup = strdup(member);
		if (dup == NULL) {
			err = nomem();
			goto out;
		}
		if (smap_add(&o->idx, dup, shash(m->seed, dup), (void *)(uintptr_t)o->n) == NULL) {
			free(dup);
			err = nomem();
			goto out;
		}
		o->e[o->n++] = (struct oent){ dup, score, expires };
		if (expires < o->min_exp)
			o->min_exp = expires;
	}
out:
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return err;
}

static int mem_set_rank(int64_t *rank, size_t *count, registry *r, const char *set,
    const char *member, int64_t now)
{
	struct mem_registry *m = mem_of(r);
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, now, false);
	ssize_t at = oset_find(m, o, member);
	if (at < 0) {
		err = troop_error_set(TROOP_ENOTFOUND, "registry: not in the set");
	} else {
		const struct oent *me = &o->e[at];
		int64_t k = 0;
		for (size_t i = 0; i < o->n; i++)
			k += o->e[i].score < me->score || (o->e[i].score == me->score &&
			    strcmp(o->e[i].member, me->member) < 0);
		*rank = k;
		*count = o->n;
	}
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return err;
}

static int mem_set_remove(registry *r, const char *set, const char *member)
{
	struct mem_registry *m = mem_of(r);
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, 0, true);
	ssize_t at = oset_find(m, o, member);
	if (at < 0) {
		err = troop_error_set(TROOP_ENOTFOUND, "registry: not in the set");
	} else {
		free(oset_del_at(m, o, (size_t)at));
	}
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return err;
}

static int mem_set_count(size_t *count, registry *r, const char *set, int64_t now)
{
	struct mem_registry *m = mem_of(r);

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, now, false);
	*count = o ? o->n : 0;
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	return 0;
}

static int mem_set_take_expired(char ***out, size_t *nout, registry *r, const char *set,
    int64_t now, size_t max)
{
	struct mem_registry *m = mem_of(r);
	char **arr = NULL;
	size_t n = 0;
	int err = 0;

	pthread_mutex_lock(&m->sets_mu);
	struct oset *o = oset_get(m, set, false, 0, true);
	for (size_t i = 0; o != NULL && i < o->n && n < max;) {
		if (o->e[i].expires > now) {
			i++;
			continue;
		}
		if (arr == NULL && (arr = calloc(max, sizeof *arr)) == NULL) {
			err = nomem();
			break;
		}
		arr[n++] = oset_del_at(m, o, i);
	}
	oset_gc(m, set, o);
	pthread_mutex_unlock(&m->sets_mu);
	*out = arr;
	*nout = n;
	return err;
}

static void mem_close(registry *r)
{
	struct mem_registry *m = mem_of(r);
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->node_heap.n; i++)
		mnode_free(m, m->node_heap.a[i]);
	free(m->node_heap.a);
	for (size_t i = 0; m->ranges != NULL && i < (size_t)1 << RANGE_BITS; i++)
		free(m->ranges[i].refs);
	free(m->ranges);
	free(m->nodes.b);
	free_bucket_map(&m->by_name);
	free_bucket_map(&m->by_hash);
	smap_free(&m->descs);  /* empty: the nodes held every description */
	expset_free(m->nonces);
	expset_free(m->rates);
	expset_free(m->kv);
	for (size_t b = 0; m->sets.b != NULL && b < m->sets.nb; b++) {
		for (struct sent *e = m->sets.b[b]; e != NULL; e = e->next) {
			struct oset *o = e->val;
			for (size_t i = 0; i < o->n; i++)
				free(o->e[i].member);
			smap_free(&o->idx);
			free(o->e);
			free(o);
		}
	}
	smap_free(&m->sets);
	pthread_mutex_destroy(&m->sets_mu);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static int mem_open(registry **out, const char *target, const registry_opts *opts)
{
	(void)target;
	if (sodium_init() < 0)
		return troop_error_set(TROOP_ERR, "registry: libsodium failed to initialise");
	struct mem_registry *m = calloc(1, sizeof *m);
	if (m == NULL)
		return nomem();
	m->base.ops = &registry_memory_ops;
	m->opts = *opts;
	crypto_shorthash_keygen(m->seed);

	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&m->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&m->sets_mu, NULL);

	expset_opts no = { .max = opts->max_nonces, .what = "nonces",
		.owner_quota = { opts->nonce_quota_signer, opts->nonce_quota_addr } };
	expset_opts ro = { .max = opts->max_rate, .what = "rate-limit keys" };
	expset_opts ko = { .max = opts->max_kv, .what = "key/value entries",
		.owner_quota = { opts->kv_quota_owner, opts->kv_quota_addr } };
	pthread_once(&codec_once, codec_init);
	m->ranges = calloc((size_t)1 << RANGE_BITS, sizeof *m->ranges);
	if (m->ranges == NULL || nmap_init(&m->nodes, 1024) != 0 ||
	    smap_init(&m->by_name, 256) != 0 ||
	    smap_init(&m->by_hash, 256) != 0 || smap_init(&m->descs, 256) != 0 ||
	    smap_init(&m->sets, 64) != 0 ||
	    expset_new(&m->nonces, &no) != 0 ||
	    expset_new(&m->rates, &ro) != 0 || expset_new(&m->kv, &ko) != 0) {
		mem_close(&m->base);
		return nomem();
	}
	*out = &m->base;
	return 0;
}

const struct registry_ops registry_memory_ops = {
	.name = "memory",
	.open = mem_open,
	.close = mem_close,
	.put_node = mem_put_node,
	.remove_node = mem_remove_node,
	.get_node = mem_get_node,
	.find_nodes = mem_find_nodes,
	.list_nodes = mem_list_nodes,
	.models = mem_models,
	.add_active_job = mem_add_active_job,
	.set_facts = mem_set_facts,
	.count_nodes = mem_count_nodes,
	.sweep = mem_sweep,
	.nonce_check = mem_nonce_check,
	.rate_check = mem_rate_check,
	.kv_put = mem_kv_put,
	.kv_get = mem_kv_get,
	.set_add = mem_set_add,
	.set_rank = mem_set_rank,
	.set_remove = mem_set_remove,
	.set_count = mem_set_count,
	.set_take_expired = mem_set_take_expired,
};
