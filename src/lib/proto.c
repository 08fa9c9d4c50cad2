/*
 * proto.c - encoders and decoders of the wire messages (proto.h).
 *
 * Every decoder follows one pattern: typed getters from json.h (which
 * name the field), then the checks json.h cannot express (formats,
 * cross-field rules), then a copy into the struct's fixed storage.
 * Nested messages prefix their errors with where they sit
 * ("models[3]: field 'name' ...", "hardware: ...").
 */
#include "proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"
#include "error.h"
#include "json.h"

#define B64URL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/* ---- helpers ------------------------------------------------------------------ */

/* An optional or required string of at most `max` bytes, copied into
 * dst (capacity max + 1).  Absent leaves dst as it is. */
static int get_str(char *dst, size_t max, const json_t *o, const char *field, bool required)
{
	const char *s = NULL;
	int rc;

	if ((rc = json_get_str(&s, o, field, required)) != 0)
		return rc;
	if (!s)
		return 0;
	if (strlen(s) > max)
		return troop_error_set(TROOP_EINVAL, "field '%s' is longer than %zu bytes",
		    field, max);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

/* As get_str, and also non-empty when present. */
static int get_strn(char *dst, size_t max, const json_t *o, const char *field, bool required)
{
	const char *s = NULL;
	int rc;

	if ((rc = json_get_strn(&s, o, field, required, max)) != 0)
		return rc;
	if (s)
		memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static bool valid_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* 1..max characters of `set`. */
static bool all_of(const char *s, const char *set, size_t max)
{
	size_t n = strspn(s, set);

	return n > 0 && n <= max && s[n] == '\0';
}

/* The optional "seal_key": a signed sealing key statement (seal.h),
 * base64url, at most PROTO_SEAL_KEY_MAX characters.  Its signature is the
 * client's to check (against the ticket's node); here only its shape.
 * Absent or "" leaves dst empty. */
static int get_seal_key(char *dst, const json_t *o)
{
	int rc = get_str(dst, PROTO_SEAL_KEY_MAX, o, "seal_key", false);

	if (rc)
		return rc;
	if (dst[0] && !all_of(dst, B64URL_CHARS, PROTO_SEAL_KEY_MAX)) {
		dst[0] = '\0';
		return troop_error_set(TROOP_EINVAL, "field 'seal_key' must be base64url");
	}
	return 0;
}

static bool valid_account(const char *s)
{
	unsigned char pk[TROOP_PK_LEN];

	return account_id_decode(pk, s) == 0;
}

/* Prefix the current error message with `where` ("hardware: ..."). */
static int nest(int rc, const char *where)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", troop_error_msg());
	return troop_error_set(rc, "%s: %s", where, msg);
}

/* ---- error body ----------------------------------------------------------------- */

json_t *proto_error_encode(int err, const char *message)
{
	return json_error_body(err, message ? message : troop_err_code(err));
}

int proto_error_decode(proto_error *out, const json_t *obj)
{
	const json_t *e = json_object_get(obj, "error"), *v;

	memset(out, 0, sizeof(*out));
	if (json_is_string(e)) {
		snprintf(out->message, sizeof(out->message), "%s", json_string_value(e));
		return 0;
	}
	if (!json_is_object(e))
		return troop_error_set(TROOP_EINVAL, "not an error body: no 'error' object");
	if (json_is_string(v = json_object_get(e, "message")))
		snprintf(out->message, sizeof(out->message), "%s", json_string_value(v));
	if (json_is_string(v = json_object_get(e, "type")))
		snprintf(out->type, sizeof(out->type), "%s", json_string_value(v));
	v = json_object_get(e, "code");
	if (json_is_string(v))
		snprintf(out->code, sizeof(out->code), "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out->code, sizeof(out->code), "%lld", (long long)json_integer_value(v));
	return 0;
}

/* ---- capabilities and endpoints ---------------------------------------------------- */

static const char *const cap_names[] = { "tools", "vision", "embeddings" };
static const char *const ep_names[] = { "chat", "completions", "embeddings", "responses",
	"messages", "tokenize", "count_tokens" };
#define N_CAPS (sizeof(cap_names) / sizeof(cap_names[0]))
#define N_EPS (sizeof(ep_names) / sizeof(ep_names[0]))

static const char *bit_name(const char *const *names, size_t n, uint32_t bit)
{
	for (size_t i = 0; i < n; i++)
		if (bit == (1u << i))
			return names[i];
	return NULL;
}

static uint32_t bit_parse(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return 1u << i;
	return 0;
}

static json_t *bits_json(const char *const *names, size_t n, uint32_t bits)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (bits & (1u << i))
			json_array_append_new(a, json_string(names[i]));
	return a;
}

const char *proto_cap_name(uint32_t bit)
{
	return bit_name(cap_names, N_CAPS, bit);
}

const char *proto_endpoint_name(uint32_t bit)
{
	return bit_name(ep_names, N_EPS, bit);
}

uint32_t proto_cap_parse(const char *s)
{
	return bit_parse(cap_names, N_CAPS, s);
}

uint32_t proto_endpoint_parse(const char *s)
{
	return bit_parse(ep_names, N_EPS, s);
}

json_t *proto_caps_json(uint32_t bits)
{
	return bits_json(cap_names, N_CAPS, bits);
}

json_t *proto_endpoints_json(uint32_t bits)
{
	return bits_json(ep_names, N_EPS, bits);
}

/* models[].capabilities: {"tools": bool, ...}; keys this version does not
 * know are dropped (a newer worker may say more). */
static int caps_decode(proto_model *m, const json_t *o)
{
	const char *k;
	json_t *v;

	if (!json_is_object(o))
		return troop_error_set(TROOP_EINVAL, "field 'capabilities' must be an object");
	if (json_object_size(o) > PROTO_NAMES_MAX)
		return troop_error_set(TROOP_EINVAL, "field 'capabilities' has more than %d keys",
		    PROTO_NAMES_MAX);
	json_object_foreach((json_t *)o, k, v) {
		uint32_t bit = proto_cap_parse(k);
		if (!json_is_boolean(v))
			return troop_error_set(TROOP_EINVAL, "capabilities: field '%.32s' must be "
			    "a boolean", k);
		m->caps_known |= bit;
		if (json_is_true(v))
			m->caps |= bit;
	}
	return 0;
}

/* models[].endpoints: ["chat", ...]; names this version does not know are
 * dropped. */
static int endpoints_decode(proto_model *m, const json_t *a)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v) {
		const char *s = json_string_value(v);
		if (!s || !s[0] || strlen(s) > PROTO_CAP_NAME_MAX)
			return troop_error_set(TROOP_EINVAL, "endpoints[%zu] must be a string of 1 "
			    "to %d characters", i, PROTO_CAP_NAME_MAX);
		m->endpoints |= proto_endpoint_parse(s);
	}
	return 0;
}

static int require_decode(proto_require *r, const json_t *o)
{
	const char *k, *ep = NULL;
	json_t *v;
	int rc;

	memset(r, 0, sizeof(*r));
	json_object_foreach((json_t *)o, k, v) {
		uint32_t bit = proto_cap_parse(k);
		if (bit) {
			if (!json_is_boolean(v))
				return troop_error_set(TROOP_EINVAL, "require: field '%s' must be a "
				    "boolean", k);
			if (json_is_true(v))
				r->caps |= bit;
		} else if (strcmp(k, "context") != 0 && strcmp(k, "endpoint") != 0) {
			return troop_error_set(TROOP_EINVAL, "require: unknown requirement '%.32s' "
			    "(known: context, tools, vision, embeddings, endpoint)", k);
		}
	}
	if ((rc = json_get_int(&r->context, o, "context", false, 0, PROTO_CONTEXT_MAX)) ||
	    (rc = json_get_str(&ep, o, "endpoint", false)))
		return nest(rc, "require");
	if (ep && !(r->endpoints = proto_endpoint_parse(ep)))
		return troop_error_set(TROOP_EINVAL, "require: field 'endpoint' must be one of "
		    "chat, completions, embeddings, responses, messages, tokenize, count_tokens");
	return 0;
}

static json_t *require_encode(const proto_require *r)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (r->context > 0)
		json_object_set_new(o, "context", json_integer(r->context));
	for (size_t i = 0; i < N_CAPS; i++)
		if (r->caps & (1u << i))
			json_object_set_new(o, cap_names[i], json_true());
	for (size_t i = 0; i < N_EPS; i++)
		if (r->endpoints & (1u << i)) {
			json_object_set_new(o, "endpoint", json_string(ep_names[i]));
			break;
		}
	return o;
}

bool proto_require_any(const proto_require *req)
{
	return req->context > 0 || req->caps || req->endpoints;
}

proto_fit proto_require_check(const proto_require *req, const proto_model *m, char *kind,
    uint32_t *why)
{
	bool unknown = false;
	char k = 0;
	uint32_t w = 0;

	/* an unknown context length passes: most requests need some context,
	 * and nodes that do not report one must not lose all their work to
	 * those that do */
	if (req->context > 0 && m->context_length > 0 && m->context_length < req->context)
		k = 'x';
	for (size_t i = 0; !k && i < N_CAPS; i++) {
		uint32_t bit = 1u << i;
		if (!(req->caps & bit))
			continue;
		if (!(m->caps_known & bit))
			unknown = true;
		else if (!(m->caps & bit)) {
			k = 'c';
			w = bit;
		}
	}
	for (size_t i = 0; !k && i < N_EPS; i++) {
		uint32_t bit = 1u << i;
		if (!(req->endpoints & bit))
			continue;
		if (!m->endpoints)
			unknown = true;
		else if (!(m->endpoints & bit)) {
			k = 'e';
			w = bit;
		}
	}
	if (kind)
		*kind = k;
	if (why)
		*why = w;
	return k ? PROTO_FIT_UNMET : unknown ? PROTO_FIT_UNKNOWN : PROTO_FIT_MET;
}

/* ---- heartbeat ------------------------------------------------------------------- */

const char *proto_status_name(proto_status s)
{
	switch (s) {
	case PROTO_IDLE: return "IDLE";
	case PROTO_BUSY: return "BUSY";
	case PROTO_OFFLINE: return "OFFLINE";
	}
	return "UNKNOWN";
}

static int model_decode(proto_model *m, const json_t *o)
{
	json_t *caps = NULL, *eps = NULL;
	int rc;

	if (!json_is_object(o))
		return troop_error_set(TROOP_EINVAL, "must be an object");
	if ((rc = get_strn(m->name, PROTO_MODEL_MAX, o, "name", true)) ||
	    (rc = get_str(m->content_hash, PROTO_HASH_MAX, o, "content_hash", false)) ||
	    (rc = json_get_int(&m->size_bytes, o, "size_bytes", false, 0, INT64_MAX)) ||
	    (rc = get_str(m->engine, PROTO_ENGINE_MAX, o, "engine", false)) ||
	    (rc = json_get_int(&m->context_length, o, "context_length", false, 0,
	    PROTO_CONTEXT_MAX)) ||
	    (rc = json_get_array(&eps, o, "endpoints", false, PROTO_NAMES_MAX)))
		return rc;
	if ((caps = json_object_get(o, "capabilities")) != NULL &&
	    (rc = caps_decode(m, caps)) != 0)
		return rc;
	if (eps && (rc = endpoints_decode(m, eps)) != 0)
		return rc;
	return 0;
}

/* One model as the heartbeat carries it: the capability fields only when
 * known. */
json_t *proto_model_encode(const proto_model *m)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "name", m->name,
	    "content_hash", m->content_hash, "size_bytes", (json_int_t)m->size_bytes,
	    "engine", m->engine);

	if (!o)
		return NULL;
	if (m->context_length > 0)
		json_object_set_new(o, "context_length", json_integer(m->context_length));
	if (m->caps_known) {
		json_t *c = json_object();
		for (size_t i = 0; c && i < N_CAPS; i++)
			if (m->caps_known & (1u << i))
				json_object_set_new(c, cap_names[i],
				    json_boolean(m->caps & (1u << i)));
		json_object_set_new(o, "capabilities", c);
	}
	if (m->endpoints)
		json_object_set_new(o, "endpoints", proto_endpoints_json(m->endpoints));
	return o;
}

int proto_models_decode(proto_model **out, size_t *n, const json_t *arr)
{
	proto_model *m;
	size_t i;
	json_t *v;

	*out = NULL;
	*n = 0;
	if (!json_is_array(arr))
		return troop_error_set(TROOP_EINVAL, "field 'models' must be an array");
	if (json_array_size(arr) > PROTO_MODELS_MAX)
		return troop_error_set(TROOP_EINVAL, "field 'models' has more than %d items",
		    PROTO_MODELS_MAX);
	if (json_array_size(arr) == 0)
		return 0;
	m = calloc(json_array_size(arr), sizeof(*m));
	if (!m)
		return troop_error_set(TROOP_ENOMEM, "out of memory");
	json_array_foreach(arr, i, v) {
		int rc = model_decode(&m[i], v);
		if (rc) {
			char where[32];
			free(m);
			snprintf(where, sizeof(where), "models[%zu]", i);
			return nest(rc, where);
		}
	}
	*out = m;
	*n = json_array_size(arr);
	return 0;
}

static int hardware_decode(proto_hardware *hw, const json_t *o)
{
	int rc;

	memset(hw, 0, sizeof(*hw));
	hw->vram_total = hw->vram_free = hw->gpu_util = -1;
	if ((rc = get_str(hw->gpu, PROTO_GPU_NAME_MAX, o, "gpu", false)) ||
	    (rc = json_get_int(&hw->gpu_count, o, "gpu_count", false, 0, PROTO_GPU_COUNT_MAX)) ||
	    (rc = json_get_int(&hw->vram_total, o, "vram_total", false, -1, PROTO_VRAM_MAX)) ||
	    (rc = json_get_int(&hw->vram_free, o, "vram_free", false, -1, PROTO_VRAM_MAX)) ||
	    (rc = json_get_int(&hw->gpu_util, o, "gpu_util", false, -1, 100)) ||
	    (rc = get_str(hw->source, PROTO_GPU_SOURCE_MAX, o, "source", false)))
		return rc;
	hw->has_vram = json_object_get(o, "vram_total") || json_object_get(o, "vram_free");
	hw->has_util = json_object_get(o, "gpu_util") != NULL;
	return 0;
}

static int engines_decode(proto_heartbeat *hb, const json_t *arr)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v) {
		proto_engine *e = &hb->engines[i];
		int64_t port = 0;
		int rc = 0;

		if (!json_is_object(v))
			rc = troop_error_set(TROOP_EINVAL, "must be an object");
		if (rc || (rc = get_str(e->type, PROTO_ENGINE_MAX, v, "type", false)) ||
		    (rc = get_str(e->version, PROTO_VERSION_MAX, v, "version", false)) ||
		    (rc = json_get_int(&port, v, "port", false, 0, 65535))) {
			char where[32];
			snprintf(where, sizeof(where), "engines[%zu]", i);
			return nest(rc, where);
		}
		e->port = (int)port;
	}
	hb->n_engines = json_array_size(arr);
	return 0;
}

int proto_heartbeat_decode(proto_heartbeat *out, const json_t *obj, const char *signer)
{
	const char *status = NULL;
	json_t *models = NULL, *load = NULL, *hw = NULL, *engines = NULL;
	int64_t port = 0, active = 0, maxj = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_strn(out->node_id, PROTO_ID_MAX, obj, "node_id", true)) ||
	    (rc = get_strn(out->tailscale_ip, PROTO_IP_MAX, obj, "tailscale_ip", true)) ||
	    (rc = json_get_int(&port, obj, "port", true, 1, 65535)) ||
	    (rc = json_get_str(&status, obj, "status", true)) ||
	    (rc = get_str(out->name, PROTO_NAME_MAX, obj, "name", false)) ||
	    (rc = json_get_array(&models, obj, "models", false, PROTO_MODELS_MAX)) ||
	    (rc = json_get_object(&load, obj, "load", false)) ||
	    (rc = json_get_object(&hw, obj, "hardware", false)) ||
	    (rc = json_get_array(&engines, obj, "engines", false, PROTO_ENGINES_MAX)) ||
	    (rc = get_str(out->encryption_public_key, PROTO_KEY_MAX, obj,
	    "encryption_public_key", false)) ||
	    (rc = get_seal_key(out->seal_key, obj)) ||
	    (rc = get_str(out->owner, PROTO_ID_MAX, obj, "owner", false)) ||
	    (rc = get_str(out->version, PROTO_VERSION_MAX, obj, "version", false)))
		goto fail;
	if (signer && strcmp(out->node_id, signer) != 0) {
		rc = troop_error_set(TROOP_EFORBIDDEN,
		    "node_id must be the signing key's account id: a node can only "
		    "heartbeat for itself");
		goto fail;
	}
	if (!valid_ip(out->tailscale_ip)) {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'tailscale_ip' must be an IPv4 or IPv6 address");
		goto fail;
	}
	if (strcmp(status, "IDLE") == 0)
		out->status = PROTO_IDLE;
	else if (strcmp(status, "BUSY") == 0)
		out->status = PROTO_BUSY;
	else if (strcmp(status, "OFFLINE") == 0)
		out->status = PROTO_OFFLINE;
	else {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'status' must be one of IDLE, BUSY, OFFLINE");
		goto fail;
	}
	if (out->owner[0] && !valid_account(out->owner)) {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'owner' must be an account id (43 base64url characters)");
		goto fail;
	}
	if (load && ((rc = json_get_int(&active, load, "active_jobs", false, 0, PROTO_JOBS_MAX)) ||
	    (rc = json_get_int(&maxj, load, "max_jobs", false, 0, PROTO_JOBS_MAX)))) {
		rc = nest(rc, "load");
		goto fail;
	}
	if (hw) {
		if ((rc = hardware_decode(&out->hardware, hw)) != 0) {
			rc = nest(rc, "hardware");
			goto fail;
		}
		out->has_hardware = true;
	}
	if (engines && (rc = engines_decode(out, engines)) != 0)
		goto fail;
	out->port = (int)port;
	out->active_jobs = (int)active;
	out->max_jobs = (int)maxj;
	if (models && (rc = proto_models_decode(&out->models, &out->n_models, models)) != 0)
		goto fail;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

static json_t *hardware_encode(const proto_hardware *hw)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "gpu", json_string(hw->gpu));
	json_object_set_new(o, "gpu_count", json_integer(hw->gpu_count));
	if (hw->has_vram) {
		json_object_set_new(o, "vram_total", json_integer(hw->vram_total));
		json_object_set_new(o, "vram_free", json_integer(hw->vram_free));
	}
	if (hw->has_util)
		json_object_set_new(o, "gpu_util", json_integer(hw->gpu_util));
	if (hw->source[0])
		json_object_set_new(o, "source", json_string(hw->source));
	return o;
}

static json_t *engines_encode(const proto_heartbeat *hb)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < hb->n_engines; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:i}", "type", hb->engines[i].type,
		    "version", hb->engines[i].version, "port", hb->engines[i].port));
	return a;
}

json_t *proto_heartbeat_encode(const proto_heartbeat *hb)
{
	json_t *b = json_object(), *models = json_array();

	if (!b || !models) {
		json_decref(b);
		json_decref(models);
		return NULL;
	}
	for (size_t i = 0; i < hb->n_models; i++)
		json_array_append_new(models, proto_model_encode(&hb->models[i]));
	json_object_set_new(b, "node_id", json_string(hb->node_id));
	json_object_set_new(b, "name", json_string(hb->name));
	json_object_set_new(b, "tailscale_ip", json_string(hb->tailscale_ip));
	json_object_set_new(b, "port", json_integer(hb->port));
	json_object_set_new(b, "status", json_string(proto_status_name(hb->status)));
	json_object_set_new(b, "models", models);
	if (hb->has_hardware)
		json_object_set_new(b, "hardware", hardware_encode(&hb->hardware));
	json_object_set_new(b, "engines", engines_encode(hb));
	json_object_set_new(b, "encryption_public_key", json_string(hb->encryption_public_key));
	if (hb->seal_key[0])
		json_object_set_new(b, "seal_key", json_string(hb->seal_key));
	json_object_set_new(b, "load", json_pack("{s:i, s:i}", "active_jobs", hb->active_jobs,
	    "max_jobs", hb->max_jobs));
	if (hb->owner[0])
		json_object_set_new(b, "owner", json_string(hb->owner));
	json_object_set_new(b, "version", json_string(hb->version));
	return b;
}

json_t *proto_heartbeat_extra_encode(const proto_heartbeat *hb)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (hb->has_hardware)
		json_object_set_new(o, "hardware", hardware_encode(&hb->hardware));
	if (hb->n_engines)
		json_object_set_new(o, "engines", engines_encode(hb));
	return o;
}

void proto_heartbeat_clear(proto_heartbeat *hb)
{
	if (!hb)
		return;
	free(hb->models);
	memset(hb, 0, sizeof(*hb));
}

int proto_heartbeat_extra_decode(proto_heartbeat *hb, const json_t *extra)
{
	json_t *hw = NULL, *engines = NULL;
	int rc;

	if ((rc = json_get_object(&hw, extra, "hardware", false)) ||
	    (rc = json_get_array(&engines, extra, "engines", false, PROTO_ENGINES_MAX)))
		return rc;
	if (hw) {
		if ((rc = hardware_decode(&hb->hardware, hw)) != 0)
			return nest(rc, "hardware");
		hb->has_hardware = true;
	}
	if (engines && (rc = engines_decode(hb, engines)) != 0)
		return rc;
	return 0;
}

/* ---- node record -------------------------------------------------------------- */

json_t *proto_node_encode(const proto_node *n)
{
	const proto_heartbeat *hb = &n->hb;
	json_t *o = proto_heartbeat_encode(hb);

	if (!o)
		return NULL;
	if (!hb->has_hardware)
		json_object_del(o, "hardware");
	if (!hb->n_engines)
		json_object_del(o, "engines");
	json_object_set_new(o, "status", json_string(n->live ? proto_status_name(hb->status) :
	    "OFFLINE"));
	json_object_set_new(o, "owner", json_string(hb->owner));
	json_object_set_new(o, "last_seen", json_integer(n->last_seen));
	json_object_set_new(o, "multiplier", json_real(n->multiplier));
	json_object_set_new(o, "verified", json_boolean(n->verified));
	json_object_set_new(o, "verified_at", json_integer(n->verified_at));
	json_object_set_new(o, "reputation", json_real(n->reputation));
	json_object_set_new(o, "live", json_boolean(n->live));
	return o;
}

int proto_node_decode(proto_node *out, const json_t *obj)
{
	proto_heartbeat *hb = &out->hb;
	const char *status = NULL;
	json_t *models = NULL, *load = NULL;
	int64_t port = 0, active = 0, maxj = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_strn(hb->node_id, PROTO_ID_MAX, obj, "node_id", true)) ||
	    (rc = get_str(hb->tailscale_ip, PROTO_IP_MAX, obj, "tailscale_ip", false)) ||
	    (rc = json_get_int(&port, obj, "port", false, 0, 65535)) ||
	    (rc = json_get_str(&status, obj, "status", true)) ||
	    (rc = get_str(hb->name, PROTO_NAME_MAX, obj, "name", false)) ||
	    (rc = json_get_array(&models, obj, "models", false, PROTO_MODELS_MAX)) ||
	    (rc = json_get_object(&load, obj, "load", false)) ||
	    (rc = get_str(hb->encryption_public_key, PROTO_KEY_MAX, obj,
	    "encryption_public_key", false)) ||
	    (rc = get_seal_key(hb->seal_key, obj)) ||
	    (rc = get_str(hb->owner, PROTO_ID_MAX, obj, "owner", false)) ||
	    (rc = get_str(hb->version, PROTO_VERSION_MAX, obj, "version", false)) ||
	    (rc = json_get_int(&out->last_seen, obj, "last_seen", false, 0, INT64_MAX)) ||
	    (rc = json_get_double(&out->multiplier, obj, "multiplier", false)) ||
	    (rc = json_get_bool(&out->verified, obj, "verified", false)) ||
	    (rc = json_get_int(&out->verified_at, obj, "verified_at", false, 0, INT64_MAX)) ||
	    (rc = json_get_double(&out->reputation, obj, "reputation", false)) ||
	    (rc = json_get_bool(&out->live, obj, "live", false)) ||
	    (rc = proto_heartbeat_extra_decode(hb, obj)))
		goto fail;
	if (hb->tailscale_ip[0] && !valid_ip(hb->tailscale_ip)) {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'tailscale_ip' must be an IPv4 or IPv6 address");
		goto fail;
	}
	if (strcmp(status, "IDLE") == 0)
		hb->status = PROTO_IDLE;
	else if (strcmp(status, "BUSY") == 0)
		hb->status = PROTO_BUSY;
	else if (strcmp(status, "OFFLINE") == 0)
		hb->status = PROTO_OFFLINE;
	else {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'status' must be one of IDLE, BUSY, OFFLINE");
		goto fail;
	}
	if (!(out->multiplier >= 0 && out->multiplier <= 1000) ||
	    !(out->reputation >= 0 && out->reputation <= 1)) {
		rc = troop_error_set(TROOP_EINVAL, "field 'multiplier' or 'reputation' is out of "
		    "range");
		goto fail;
	}
	if (load && ((rc = json_get_int(&active, load, "active_jobs", false, 0, PROTO_JOBS_MAX)) ||
	    (rc = json_get_int(&maxj, load, "max_jobs", false, 0, PROTO_JOBS_MAX)))) {
		rc = nest(rc, "load");
		goto fail;
	}
	hb->port = (int)port;
	hb->active_jobs = (int)active;
	hb->max_jobs = (int)maxj;
	if (models && (rc = proto_models_decode(&hb->models, &hb->n_models, models)) != 0)
		goto fail;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

void proto_node_clear(proto_node *n)
{
	if (!n)
		return;
	proto_heartbeat_clear(&n->hb);
	memset(n, 0, sizeof(*n));
}

/* ---- heartbeat reply ------------------------------------------------------------ */

json_t *proto_heartbeat_reply_encode(const proto_heartbeat_reply *r)
{
	if (r->removed)
		return json_pack("{s:s, s:I, s:I}", "status", "removed", "ttl", (json_int_t)0,
		    "next_heartbeat", (json_int_t)0);
	return json_pack("{s:s, s:I, s:I, s:b, s:f, s:s*}", "status", "seen",
	    "ttl", (json_int_t)r->ttl, "next_heartbeat", (json_int_t)r->next_heartbeat,
	    "verified", r->verified, "multiplier", r->multiplier,
	    "ticket_kid", r->ticket_kid[0] ? r->ticket_kid : NULL);
}

int proto_heartbeat_reply_decode(proto_heartbeat_reply *out, const json_t *obj)
{
	const char *status = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = json_get_str(&status, obj, "status", true)) ||
	    (rc = json_get_int(&out->ttl, obj, "ttl", false, 0, PROTO_TTL_MAX)) ||
	    (rc = json_get_int(&out->next_heartbeat, obj, "next_heartbeat", false, 0,
	    PROTO_TTL_MAX)) ||
	    (rc = json_get_bool(&out->verified, obj, "verified", false)) ||
	    (rc = json_get_double(&out->multiplier, obj, "multiplier", false)) ||
	    (rc = get_strn(out->ticket_kid, TICKET_KID_LEN, obj, "ticket_kid", false)))
		return rc;
	if (strcmp(status, "removed") == 0) {
		/* a removed node has nothing to schedule: the rest means nothing */
		memset(out, 0, sizeof(*out));
		out->removed = true;
	} else if (strcmp(status, "seen") != 0)
		return troop_error_set(TROOP_EINVAL, "field 'status' must be \"seen\" or \"removed\"");
	if (!(out->multiplier >= 0 && out->multiplier <= 1000))
		return troop_error_set(TROOP_EINVAL, "field 'multiplier' must be between 0 and 1000");
	return 0;
}

/* ---- authorize ------------------------------------------------------------------- */

int proto_authorize_req_decode(proto_authorize_req *out, const json_t *obj)
{
	json_t *exclude = NULL, *require = NULL, *v;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_strn(out->model, PROTO_MODEL_MAX, obj, "model", true)) ||
	    (rc = get_strn(out->node_id, PROTO_ID_MAX, obj, "node_id", false)) ||
	    (rc = json_get_array(&exclude, obj, "exclude", false, PROTO_EXCLUDE_MAX)) ||
	    (rc = json_get_int(&out->max_seconds, obj, "max_seconds", false, 1,
	    PROTO_MAX_SECONDS_MAX)) ||
	    (rc = json_get_object(&require, obj, "require", false)) ||
	    (rc = json_get_int(&out->wait, obj, "wait", false, 0, PROTO_WAIT_MAX)) ||
	    (rc = json_get_bool(&out->ahead, obj, "ahead", false)))
		goto fail;
	if (require && (rc = require_decode(&out->require, require)) != 0)
		goto fail;
	json_array_foreach(exclude, i, v) {
		const char *s = json_string_value(v);
		if (!s || !s[0] || strlen(s) > PROTO_ID_MAX) {
			rc = troop_error_set(TROOP_EINVAL, "exclude[%zu] must be a node id "
			    "(a string of 1 to %d characters)", i, PROTO_ID_MAX);
			goto fail;
		}
		memcpy(out->exclude[i], s, strlen(s) + 1);
	}
	out->n_exclude = json_array_size(exclude);
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_authorize_req_encode(const proto_authorize_req *req)
{
	json_t *b = json_pack("{s:s}", "model", req->model);

	if (!b)
		return NULL;
	if (req->node_id[0])
		json_object_set_new(b, "node_id", json_string(req->node_id));
	if (req->n_exclude) {
		json_t *a = json_array();
		for (size_t i = 0; a && i < req->n_exclude; i++)
			json_array_append_new(a, json_string(req->exclude[i]));
		json_object_set_new(b, "exclude", a);
	}
	if (req->max_seconds > 0)
		json_object_set_new(b, "max_seconds", json_integer(req->max_seconds));
	if (proto_require_any(&req->require))
		json_object_set_new(b, "require", require_encode(&req->require));
	if (req->wait > 0)
		json_object_set_new(b, "wait", json_integer(req->wait));
	if (req->ahead)
		json_object_set_new(b, "ahead", json_true());
	return b;
}

bool proto_authorize_req_excludes(const proto_authorize_req *req, const char *node_id)
{
	for (size_t i = 0; i < req->n_exclude; i++)
		if (strcmp(req->exclude[i], node_id) == 0)
			return true;
	return false;
}

int proto_authorize_req_exclude(proto_authorize_req *req, const char *node_id)
{
	if (!node_id || !node_id[0] || strlen(node_id) > PROTO_ID_MAX)
		return troop_error_set(TROOP_EINVAL, "not a node id");
	if (proto_authorize_req_excludes(req, node_id))
		return 0;
	if (req->n_exclude >= PROTO_EXCLUDE_MAX)
		return troop_error_set(TROOP_ETOOLARGE, "more than %d excluded nodes",
		    PROTO_EXCLUDE_MAX);
	memcpy(req->exclude[req->n_exclude++], node_id, strlen(node_id) + 1);
	return 0;
}

int proto_authorize_reply_decode(proto_authorize_reply *out, const json_t *obj)
{
	int64_t port = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	out->max_seconds = 300;
	if ((rc = get_strn(out->job_id, PROTO_JOB_ID_MAX, obj, "job_id", true)) ||
	    (rc = get_strn(out->token, PROTO_TICKET_MAX, obj, "token", true)) ||
	    (rc = get_strn(out->node_id, PROTO_ID_MAX, obj, "node_id", true)) ||
	    (rc = get_strn(out->target_ip, PROTO_IP_MAX, obj, "target_ip", true)) ||
	    (rc = json_get_int(&port, obj, "target_port", true, 1, 65535)) ||
	    (rc = json_get_int(&out->estimated_cost, obj, "estimated_cost", false, 0, INT64_MAX)) ||
	    (rc = json_get_int(&out->expires_at, obj, "expires_at", false, 0, INT64_MAX)) ||
	    (rc = json_get_int(&out->max_seconds, obj, "max_seconds", false, 1,
	    PROTO_MAX_SECONDS_MAX)) ||
	    (rc = get_str(out->encryption_public_key, PROTO_KEY_MAX, obj,
	    "encryption_public_key", false)) ||
	    (rc = get_seal_key(out->seal_key, obj)))
		goto fail;
	if (!all_of(out->job_id, B64URL_CHARS, PROTO_JOB_ID_MAX)) {
		rc = troop_error_set(TROOP_EINVAL, "field 'job_id' must be base64url characters");
		goto fail;
	}
	if (!all_of(out->token, B64URL_CHARS ".", PROTO_TICKET_MAX)) {
		rc = troop_error_set(TROOP_EINVAL, "field 'token' must be a compact JWS");
		goto fail;
	}
	if (!all_of(out->node_id, B64URL_CHARS, PROTO_ID_MAX)) {
		rc = troop_error_set(TROOP_EINVAL, "field 'node_id' must be a node id");
		goto fail;
	}
	if (!valid_ip(out->target_ip)) {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'target_ip' must be an IPv4 or IPv6 address");
		goto fail;
	}
	out->target_port = (int)port;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_authorize_reply_encode(const proto_authorize_reply *rep)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:s}",
	    "job_id", rep->job_id, "token", rep->token, "node_id", rep->node_id,
	    "target_ip", rep->target_ip, "target_port", rep->target_port,
	    "estimated_cost", (json_int_t)rep->estimated_cost,
	    "expires_at", (json_int_t)rep->expires_at,
	    "max_seconds", (json_int_t)rep->max_seconds,
	    "encryption_public_key", rep->encryption_public_key);

	if (o && rep->seal_key[0])
		json_object_set_new(o, "seal_key", json_string(rep->seal_key));
	return o;
}

/* ---- receipt and settlement ---------------------------------------------------------- */

int proto_receipt_decode(proto_receipt *out, const json_t *obj)
{
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(out->outcome, sizeof(out->outcome), "ok");
	if ((rc = get_strn(out->job_id, PROTO_JOB_ID_MAX, obj, "job_id", true)) ||
	    (rc = get_strn(out->node_id, PROTO_ID_MAX, obj, "node_id", false)) ||
	    (rc = get_str(out->requester, PROTO_ID_MAX, obj, "requester", false)) ||
	    (rc = get_str(out->model, PROTO_MODEL_MAX, obj, "model", false)) ||
	    (rc = json_get_int(&out->duration_ms, obj, "duration_ms", true, 0,
	    PROTO_DURATION_MS_MAX)) ||
	    (rc = json_get_int(&out->prompt_tokens, obj, "prompt_tokens", false, 0,
	    PROTO_TOKENS_MAX)) ||
	    (rc = json_get_int(&out->completion_tokens, obj, "completion_tokens", false, 0,
	    PROTO_TOKENS_MAX)) ||
	    (rc = get_strn(out->outcome, PROTO_OUTCOME_MAX, obj, "outcome", false)) ||
	    (rc = json_get_int(&out->started_at, obj, "started_at", false, 0, INT64_MAX)) ||
	    (rc = json_get_int(&out->ended_at, obj, "ended_at", false, 0, INT64_MAX)) ||
	    (rc = get_strn(out->response_digest, PROTO_DIGEST_MAX, obj, "response_digest",
	    false))) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	return 0;
}

json_t *proto_receipt_encode(const proto_receipt *r)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}",
	    "job_id", r->job_id, "requester", r->requester,
	    "model", r->model, "duration_ms", (json_int_t)r->duration_ms,
	    "prompt_tokens", (json_int_t)r->prompt_tokens,
	    "completion_tokens", (json_int_t)r->completion_tokens,
	    "outcome", r->outcome[0] ? r->outcome : "ok");

	if (o && r->node_id[0])
		json_object_set_new(o, "node_id", json_string(r->node_id));
	if (o && (r->started_at || r->ended_at)) {
		json_object_set_new(o, "started_at", json_integer(r->started_at));
		json_object_set_new(o, "ended_at", json_integer(r->ended_at));
	}
	if (o && r->response_digest[0])
		json_object_set_new(o, "response_digest", json_string(r->response_digest));
	return o;
}

int proto_settlement_decode(proto_settlement *out, const json_t *obj)
{
	const char *status = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = json_get_str(&status, obj, "status", true)) ||
	    (rc = get_str(out->job_id, PROTO_JOB_ID_MAX, obj, "job_id", false)) ||
	    (rc = json_get_int(&out->charged, obj, "charged", true, 0, INT64_MAX)) ||
	    (rc = json_get_int(&out->refunded, obj, "refunded", true, 0, INT64_MAX)) ||
	    (rc = json_get_bool(&out->already_settled, obj, "already_settled", false)))
		return rc;
	if (strcmp(status, "settled") != 0)
		return troop_error_set(TROOP_EINVAL, "field 'status' must be \"settled\"");
	return 0;
}

json_t *proto_settlement_encode(const proto_settlement *s)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:b}", "status", "settled",
	    "job_id", s->job_id, "charged", (json_int_t)s->charged,
	    "refunded", (json_int_t)s->refunded, "already_settled", s->already_settled);
}

/* ---- public key ---------------------------------------------------------------------- */

int proto_public_key_decode(proto_public_key *out, const json_t *obj)
{
	unsigned char pk[TROOP_PK_LEN];
	char want[TICKET_KID_LEN + 1];
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_strn(out->public_key, PROTO_ID_MAX, obj, "public_key", true)) ||
	    (rc = get_strn(out->kid, TICKET_KID_LEN, obj, "kid", true)) ||
	    (rc = get_strn(out->alg, sizeof(out->alg) - 1, obj, "alg", true)))
		goto fail;
	if (strcmp(out->alg, "EdDSA") != 0) {
		rc = troop_error_set(TROOP_EINVAL, "field 'alg' must be \"EdDSA\", got \"%s\"",
		    out->alg);
		goto fail;
	}
	if (b64url_decode(pk, sizeof(pk), &n, out->public_key, strlen(out->public_key)) != 0 ||
	    n != TROOP_PK_LEN) {
		rc = troop_error_set(TROOP_EINVAL,
		    "field 'public_key' must be 32 bytes of base64url");
		goto fail;
	}
	ticket_kid(want, pk);
	if (strcmp(out->kid, want) != 0) {
		rc = troop_error_set(TROOP_EINVAL, "field 'kid' does not match the key");
		goto fail;
	}
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_public_key_encode(const proto_public_key *k)
{
	return json_pack("{s:s, s:s, s:s}", "public_key", k->public_key, "kid", k->kid,
	    "alg", "EdDSA");
}

json_t *proto_jwks_encode(const proto_public_key *k, size_t n)
{
	json_t *keys = json_array();

	for (size_t i = 0; i < n && keys; i++)
		json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty",
		    "OKP", "crv", "Ed25519", "x", k[i].public_key, "kid", k[i].kid, "alg",
		    "EdDSA", "use", "sig"));
	return json_pack("{s:o}", "keys", keys);
}

int proto_jwks_decode(proto_public_key *out, size_t *n, const json_t *obj)
{
	json_t *keys = NULL, *k;
	size_t i;
	int rc;

	*n = 0;
	if ((rc = json_get_array(&keys, obj, "keys", true, PROTO_JWKS_MAX)) != 0)
		return rc;
	json_array_foreach(keys, i, k) {
		const char *kty = json_string_value(json_object_get(k, "kty"));
		const char *crv = json_string_value(json_object_get(k, "crv"));
		const char *alg = json_string_value(json_object_get(k, "alg"));
		json_t *one;

		if (!json_is_object(k))
			return troop_error_set(TROOP_EINVAL, "field 'keys' must hold objects");
		if (!kty || !crv || strcmp(kty, "OKP") != 0 || strcmp(crv, "Ed25519") != 0)
			continue;
		one = json_pack("{s:O?, s:O?, s:s}", "public_key", json_object_get(k, "x"),
		    "kid", json_object_get(k, "kid"), "alg", alg ? alg : "EdDSA");
		if (!one)
			return troop_error_set(TROOP_ENOMEM, "out of memory for a JWKS key");
		rc = proto_public_key_decode(&out[*n], one);
		json_decref(one);
		if (rc != 0) {
			*n = 0;
			return troop_error_set(rc, "JWKS key %zu: %s", i, troop_error_msg());
		}
		(*n)++;
	}
	return 0;
}

/* ---- proof-of-hardware ------------------------------------------------------------------ */

/* Exactly `len` bytes of standard base64 from string field value `txt`. */
static bool b64_exact(void *out, size_t len, const char *txt)
{
	size_t got = 0;

	return txt && b64_decode(out, len, &got, txt, strlen(txt)) == 0 && got == len;
}

int proto_poh_challenge_req_decode(proto_poh_challenge_req *out, const json_t *obj)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_str(out->class_, PROTO_POH_CLASS_MAX, obj, "class", false)) != 0)
		return rc;
	if (out->class_[0] && strcmp(out->class_, "gpu") != 0 && strcmp(out->class_, "cpu") != 0)
		return troop_error_set(TROOP_EINVAL, "field 'class' must be \"gpu\" or \"cpu\"");
	return 0;
}

json_t *proto_poh_challenge_req_encode(const proto_poh_challenge_req *req)
{
	return req->class_[0] ? json_pack("{s:s}", "class", req->class_) : json_object();
}

int proto_poh_challenge_decode(proto_poh_challenge *out, const json_t *obj)
{
	const char *seed = NULL, *alg = NULL;
	size_t len = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_strn(out->challenge_id, PROTO_POH_ID_MAX, obj, "challenge_id", true)) ||
	    (rc = json_get_str(&seed, obj, "seed", true)) ||
	    (rc = json_get_str(&alg, obj, "algorithm", true)) ||
	    (rc = json_get_int(&out->matrix_size, obj, "matrix_size", true, POH_N_MIN,
	    POH_N_MAX)) ||
	    (rc = json_get_int(&out->rounds, obj, "rounds", true, POH_ROUNDS_MIN,
	    POH_ROUNDS_MAX)) ||
	    (rc = json_get_int(&out->expires_at, obj, "expires_at", false, 0, INT64_MAX)) ||
	    (rc = json_get_int(&out->samples, obj, "samples", false, 0, POH_K_MAX)) ||
	    (rc = get_str(out->class_, PROTO_POH_CLASS_MAX, obj, "class", false)))
		goto fail;
	if (strcmp(alg, POH_ALGORITHM) != 0) {
		rc = troop_error_set(TROOP_EINVAL, "algorithm '%.64s' is not supported "
		    "(this worker does %s)", alg, POH_ALGORITHM);
		goto fail;
	}
	if (b64url_decode(out->seed, sizeof(out->seed), &len, seed, strlen(seed)) != 0 ||
	    len != POH_SEED_LEN) {
		rc = troop_error_set(TROOP_EINVAL, "field 'seed' must be %d bytes in base64url",
		    POH_SEED_LEN);
		goto fail;
	}
	if ((rc = poh_params_check((size_t)out->matrix_size, (unsigned)out->rounds)) != 0)
		goto fail;
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_poh_challenge_encode(const proto_poh_challenge *ch)
{
	char seed[64];
	json_t *o;

	b64url_encode(seed, sizeof(seed), ch->seed, sizeof(ch->seed));
	o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:s}",
	    "challenge_id", ch->challenge_id, "seed", seed,
	    "matrix_size", (json_int_t)ch->matrix_size, "rounds", (json_int_t)ch->rounds,
	    "algorithm", POH_ALGORITHM, "expires_at", (json_int_t)ch->expires_at,
	    "samples", (json_int_t)ch->samples, "class", ch->class_);
	memset(seed, 0, sizeof(seed));
	return o;
}

int proto_poh_verify_req_decode(proto_poh_verify_req *out, const json_t *obj)
{
	const char *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_strn(out->challenge_id, PROTO_POH_ID_MAX, obj, "challenge_id", true)) ||
	    (rc = json_get_str(&root, obj, "merkle_root", true)))
		goto fail;
	if (!b64_exact(out->merkle_root, POH_HASH_LEN, root)) {
		rc = troop_error_set(TROOP_EINVAL, "field 'merkle_root' must be %d bytes in "
		    "base64", POH_HASH_LEN);
		goto fail;
	}
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_poh_verify_req_encode(const proto_poh_verify_req *req)
{
	char root[64];

	b64_encode(root, sizeof(root), req->merkle_root, POH_HASH_LEN);
	return json_pack("{s:s, s:s}", "challenge_id", req->challenge_id, "merkle_root", root);
}

int proto_poh_verify_reply_decode(proto_poh_verify_reply *out, const json_t *obj, size_t n)
{
	json_t *indices = NULL, *v;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = get_str(out->challenge_id, PROTO_POH_ID_MAX, obj, "challenge_id", false)) ||
	    (rc = json_get_array(&indices, obj, "indices", true, POH_K_MAX)) ||
	    (rc = json_get_int(&out->expires_at, obj, "expires_at", false, 0, INT64_MAX)))
		goto fail;
	json_array_foreach(indices, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    (uint64_t)json_integer_value(v) >= n) {
			rc = troop_error_set(TROOP_EINVAL, "indices[%zu] must be a row index below "
			    "%zu", i, n);
			goto fail;
		}
		out->indices[i] = (uint32_t)json_integer_value(v);
	}
	out->n_indices = json_array_size(indices);
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_poh_verify_reply_encode(const proto_poh_verify_reply *rep)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < rep->n_indices; i++)
		json_array_append_new(a, json_integer(rep->indices[i]));
	return json_pack("{s:s, s:o, s:I}", "challenge_id", rep->challenge_id, "indices", a,
	    "expires_at", (json_int_t)rep->expires_at);
}

int proto_poh_reveal_id(char id[PROTO_POH_ID_MAX + 1], const json_t *obj)
{
	json_t *rows = NULL;
	int rc;

	id[0] = '\0';
	if ((rc = get_strn(id, PROTO_POH_ID_MAX, obj, "challenge_id", true)) ||
	    (rc = json_get_array(&rows, obj, "rows", true, POH_K_MAX)))
		id[0] = '\0';
	return rc;
}

static int reveal_row(proto_poh_row *row, int8_t *data, size_t n, const json_t *item)
{
	const char *txt = NULL;
	int64_t index = 0;
	json_t *jp = NULL, *h;
	size_t hi;
	int rc;

	if (!json_is_object(item))
		return troop_error_set(TROOP_EINVAL, "must be an object");
	if ((rc = json_get_int(&index, item, "index", true, 0, (int64_t)n - 1)) ||
	    (rc = json_get_str(&txt, item, "row", true)) ||
	    (rc = json_get_array(&jp, item, "path", true, POH_PATH_MAX)))
		return rc;
	if (!b64_exact(data, n, txt))
		return troop_error_set(TROOP_EINVAL, "field 'row' must be %zu bytes in base64", n);
	json_array_foreach(jp, hi, h)
		if (!b64_exact(row->path[hi], POH_HASH_LEN, json_string_value(h)))
			return troop_error_set(TROOP_EINVAL, "path[%zu] must be a %d-byte hash in "
			    "base64", hi, POH_HASH_LEN);
	row->index = (uint32_t)index;
	row->row = data;
	row->path_len = json_array_size(jp);
	return 0;
}

int proto_poh_reveal_decode(proto_poh_reveal *out, const json_t *obj, size_t n)
{
	json_t *rows = NULL, *item;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (n < POH_N_MIN || n > POH_N_MAX)
		return troop_error_set(TROOP_EINVAL, "row length %zu is out of range", n);
	if ((rc = get_strn(out->challenge_id, PROTO_POH_ID_MAX, obj, "challenge_id", true)) ||
	    (rc = json_get_array(&rows, obj, "rows", true, POH_K_MAX)))
		goto fail;
	out->n = n;
	if (json_array_size(rows) > 0) {
		out->rows = calloc(json_array_size(rows), sizeof(*out->rows));
		out->data = malloc(json_array_size(rows) * n);
		if (!out->rows || !out->data) {
			rc = troop_error_set(TROOP_ENOMEM, "out of memory");
			goto fail;
		}
	}
	json_array_foreach(rows, i, item) {
		if ((rc = reveal_row(&out->rows[i], out->data + i * n, n, item)) != 0) {
			char where[32];
			snprintf(where, sizeof(where), "rows[%zu]", i);
			rc = nest(rc, where);
			goto fail;
		}
	}
	out->n_rows = json_array_size(rows);
	return 0;
fail:
	proto_poh_reveal_clear(out);
	return rc;
}

json_t *proto_poh_reveal_encode(const proto_poh_reveal *rv)
{
	json_t *rows = json_array();
	char *text = malloc(b64_len(rv->n > POH_HASH_LEN ? rv->n : POH_HASH_LEN) + 1);

	if (!rows || !text) {
		json_decref(rows);
		free(text);
		return NULL;
	}
	for (size_t i = 0; i < rv->n_rows; i++) {
		const proto_poh_row *r = &rv->rows[i];
		json_t *jp = json_array();
		for (size_t h = 0; jp && h < r->path_len; h++) {
			b64_encode(text, b64_len(POH_HASH_LEN) + 1, r->path[h], POH_HASH_LEN);
			json_array_append_new(jp, json_string(text));
		}
		b64_encode(text, b64_len(rv->n) + 1, r->row, rv->n);
		json_array_append_new(rows, json_pack("{s:I, s:s, s:o}", "index",
		    (json_int_t)r->index, "row", text, "path", jp));
	}
	free(text);
	return json_pack("{s:s, s:o}", "challenge_id", rv->challenge_id, "rows", rows);
}

void proto_poh_reveal_clear(proto_poh_reveal *rv)
{
	if (!rv)
		return;
	free(rv->rows);
	free(rv->data);
	memset(rv, 0, sizeof(*rv));
}

int proto_poh_result_decode(proto_poh_result *out, const json_t *obj)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = json_get_bool(&out->verified, obj, "verified", true)) ||
	    (rc = json_get_double(&out->multiplier, obj, "multiplier", true)) ||
	    (rc = json_get_double(&out->ops, obj, "ops", false)) ||
	    (rc = json_get_double(&out->ops_per_s, obj, "ops_per_s", false)) ||
	    (rc = json_get_int(&out->elapsed_ms, obj, "elapsed_ms", false, 0, INT64_MAX)) ||
	    (rc = json_get_int(&out->matrix_size, obj, "matrix_size", false, 0, POH_N_MAX)) ||
	    (rc = json_get_int(&out->rounds, obj, "rounds", false, 0, POH_ROUNDS_MAX)) ||
	    (rc = json_get_int(&out->samples, obj, "samples", false, 0, POH_K_MAX)) ||
	    (rc = json_get_int(&out->verified_at, obj, "verified_at", false, 0, INT64_MAX)))
		goto fail;
	if (!(out->multiplier >= 0 && out->multiplier <= 1000)) {
		rc = troop_error_set(TROOP_EINVAL, "field 'multiplier' must be between 0 and 1000");
		goto fail;
	}
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	return rc;
}

json_t *proto_poh_result_encode(const proto_poh_result *res)
{
	return json_pack("{s:s, s:b, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I}",
	    "status", res->verified ? "verified" : "rejected", "verified", res->verified,
	    "multiplier", res->multiplier, "ops", res->ops, "ops_per_s", res->ops_per_s,
	    "elapsed_ms", (json_int_t)res->elapsed_ms, "matrix_size", (json_int_t)res->matrix_size,
	    "rounds", (json_int_t)res->rounds, "samples", (json_int_t)res->samples,
	    "verified_at", (json_int_t)res->verified_at);
}

/* ---- display names ----------------------------------------------------------- */

/* The code point of the UTF-8 sequence at s (its length in *len), or -1
 * for a malformed one. */
static long utf8_next(const unsigned char *s, size_t *len)
{
	long cp;
	size_t n;

	if (s[0] < 0x80) {
		*len = 1;
		return s[0];
	}
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return -1;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*len = n;
	return cp;
}

int proto_display_name_check(const char *name)
{
	size_t n, len;

	if (name == NULL)
		return troop_error_set(TROOP_EINVAL, "no display name");
	n = strlen(name);
	if (n == 0)
		return 0;
	if (n > PROTO_DISPLAY_NAME_MAX)
		return troop_error_set(TROOP_EINVAL, "a display name is at most %d bytes, "
		    "this one is %zu", PROTO_DISPLAY_NAME_MAX, n);
	if (name[0] == ' ' || name[n - 1] == ' ')
		return troop_error_set(TROOP_EINVAL, "a display name does not begin or end "
		    "with a space");
	for (size_t i = 0; i < n; i += len) {
		long cp = utf8_next((const unsigned char *)name + i, &len);

		if (cp < 0)
			return troop_error_set(TROOP_EINVAL, "a display name must be UTF-8");
		if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
			return troop_error_set(TROOP_EINVAL, "a display name has no control "
			    "characters");
		if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
		    (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff)
			return troop_error_set(TROOP_EINVAL, "a display name has no invisible or "
			    "direction-changing characters (U+%04lX)", (unsigned long)cp);
	}
	return 0;
}
