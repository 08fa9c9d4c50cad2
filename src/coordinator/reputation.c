/*
 * reputation.c - node reputation from what the coordinator observes, and
 * the weighted draw node choice uses (reputation.h; docs/SCHEDULING.md).
 *
 * The pure part turns counts into components; the registry part keeps a
 * node's observations as a small JSON value under "rep:<node id>" in the
 * registry's key/value store, updated by heartbeats and delivery reports.
 * That value is written as text (stats_write, no JSON tree: a heartbeat
 * writes one) and read back by stats_scan when it has the shape
 * stats_write gives it, else parsed as any JSON object (a value written
 * by another version).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "reputation.h"

#define REP_KEY_PREFIX "rep:"
#define REP_VALUE_MAX 512

/* ---- components ------------------------------------------------------------- */

static double clamp01(double x)
{
	if (!(x > 0))
		return 0;
	return x > 1 ? 1 : x;
}

static double availability(const reputation_stats *s)
{
	double up = s ? s->up_s : 0, down = s ? s->down_s : 0;

	if (up < 0)
		up = 0;
	if (down < 0)
		down = 0;
	return (up + REP_AVAIL_PRIOR_S) / (up + down + REP_AVAIL_PRIOR_S);
}

static double reliability(const reputation_inputs *in)
{
	double ok = in->jobs_ok > 0 ? (double)in->jobs_ok : 0;
	double bad = 0;

	bad += in->jobs_failed > 0 ? (double)in->jobs_failed : 0;
	bad += in->disputes > 0 ? (double)in->disputes : 0;
	if (in->stats && in->stats->failovers > 0)
		bad += (double)in->stats->failovers;
	return (ok + 1.0) / (ok + bad + 2.0);
}

static double speed(const reputation_stats *s)
{
	if (!s || s->speed_n <= 0)
		return 0.5;
	return 0.5 * REP_TTFT_REF_MS / (REP_TTFT_REF_MS + (s->ttft_ms > 0 ? s->ttft_ms : 0)) +
	    0.5 * (s->tps > 0 ? s->tps / (s->tps + REP_TPS_REF) : 0);
}

static double audits(const reputation_inputs *in)
{
	double pass = in->audits_passed > 0 ? (double)in->audits_passed : 0;
	double fail = in->audits_failed > 0 ? (double)in->audits_failed : 0;

	return (pass + 1.0) / (pass + fail + 1.0);
}

void reputation_fill(registry_facts *f, const reputation_inputs *in)
{
	const reputation_stats *s = in->stats;

	f->rep_availability = clamp01(availability(s));
	f->rep_reliability = clamp01(reliability(in));
	f->rep_speed = clamp01(speed(s));
	f->rep_audits = clamp01(audits(in));
	f->reputation = clamp01(f->rep_availability * f->rep_reliability * f->rep_speed *
	    f->rep_audits);
	f->ttft_ms = s && s->speed_n > 0 && s->ttft_ms > 0 ? s->ttft_ms : 0;
	f->tokens_per_s = s && s->speed_n > 0 && s->tps > 0 ? s->tps : 0;
	f->failovers = s && s->failovers > 0 ? s->failovers : 0;
	f->served_jobs = s && s->served > 0 ? s->served : 0;
}

void reputation_heartbeat(reputation_stats *s, int64_t ttl, int64_t now)
{
	if (s->hb_last > 0 && now > s->hb_last) {
		double gap = (double)(now - s->hb_last);
		double keep = pow(0.5, gap / REP_AVAIL_HALF_S);
		double live = gap < (double)ttl ? gap : (double)ttl;
		s->up_s = s->up_s * keep + live;
		s->down_s = s->down_s * keep + (gap - live);
	}
	if (now > s->hb_last)
		s->hb_last = now;
}

void reputation_report_add(reputation_stats *s, const reputation_report *r)
{
	const char *o = r->outcome ? r->outcome : "";

	if (strcmp(o, "unreachable") == 0 || strcmp(o, "engine_error") == 0 ||
	    strcmp(o, "refused") == 0) {
		s->failovers++;
		return;
	}
	if (strcmp(o, "complete") != 0)
		return;   /* cut jobs count in the ledger; aborted ones say nothing */
	s->delivered++;
	if (r->duration_ms <= 0)
		return;
	{
		double ttfb = r->ttfb_ms >= 0 && r->ttfb_ms <= r->duration_ms ?
		    (double)r->ttfb_ms : (double)r->duration_ms;
		double gen_ms = (double)r->duration_ms - ttfb;
		double tps;
		bool well;
		/* the rate while generating; a reply in one piece counts over
		 * its whole duration */
		if (gen_ms < 1)
			gen_ms = (double)r->duration_ms;
		tps = r->tokens > 0 ? (double)r->tokens * 1000.0 / gen_ms : 0;
		/* served well: no slower than half its usual pace */
		well = s->speed_n == 0 || tps >= 0.5 * s->tps;
		if (s->speed_n == 0) {
			s->ttft_ms = ttfb;
			s->tps = tps;
		} else {
			s->ttft_ms += REP_EWMA * (ttfb - s->ttft_ms);
			s->tps += REP_EWMA * (tps - s->tps);
		}
		s->speed_n++;
		if (well && r->running > s->served)
			s->served = r->running;
	}
}

int reputation_slots(int reported, int class_cap, int new_cap, int served)
{
	int slots = reported;

	if (reported <= 0)
		return 0;
	if (class_cap <= 0)
		return slots;
	if (slots > class_cap)
		slots = class_cap;
	if (new_cap > 0) {
		long earned = (long)served * REP_SERVED_GROWTH;
		if (earned < new_cap)
			earned = new_cap;
		if (slots > earned)
			slots = (int)earned;
	}
	return slots;
}

bool reputation_is_new(const registry_facts *f)
{
	return f->jobs < REP_NEW_JOBS;
}

double reputation_weight(const registry_facts *f, double fair)
{
	double w = f->reputation;

	if (reputation_is_new(f) && w < fair)
		w = fair;
	return w > REP_WEIGHT_MIN ? w : REP_WEIGHT_MIN;
}

int reputation_draw(const double *w, size_t n, double u)
{
	double total = 0, acc = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		total += w[i] > 0 ? w[i] : 0;
	if (!(total > 0))
		return (int)(u * (double)n) < (int)n ? (int)(u * (double)n) : (int)n - 1;
	u *= total;
	for (size_t i = 0; i < n; i++) {
		acc += w[i] > 0 ? w[i] : 0;
		if (u < acc)
			return (int)i;
	}
	/* rounding: the last node of positive weight */
	for (size_t i = n; i-- > 0;)
		if (w[i] > 0)
			return (int)i;
	return (int)n - 1;
}

/* ---- the registry's copy ------------------------------------------------------ */

static pthread_mutex_t rep_mu = PTHREAD_MUTEX_INITIALIZER;

static void stats_key(char *out, size_t len, const char *node_id)
{
	snprintf(out, len, REP_KEY_PREFIX "%s", node_id);
}

static double num(const json_t *o, const char *k)
{
	double v = json_number_value(json_object_get(o, k));

	return isfinite(v) && v >= 0 ? v : 0;
}

/* The keys of the stored value, in the order stats_write writes them. */
static const struct {
	const char *key;
} stat_keys[] = {
	{ "hb" }, { "up" }, { "down" }, { "ttft" }, { "tps" }, { "n" }, { "ok" }, { "fo" },
	{ "srv" },
};
#define N_STATS (sizeof(stat_keys) / sizeof(stat_keys[0]))

/* *out from the values as num() reads them (finite, >= 0, else 0). */
static void stats_from_array(reputation_stats *out, const double v[N_STATS])
{
	out->hb_last = (int64_t)v[0];
	out->up_s = v[1];
	out->down_s = v[2];
	out->ttft_ms = v[3];
	out->tps = v[4];
	out->speed_n = (int64_t)v[5];
	out->delivered = (int64_t)v[6];
	out->failovers = (int64_t)v[7];
	out->served = (int)fmin(v[8], 1e6);
}

/* A real as json_dumps writes it: "%.17g", with ".0" when that looks like
 * an integer; a non-finite one (JSON has none) as 0.0. */
static void real_text(char out[40], double v)
{
	int n = snprintf(out, 40, "%.17g", isfinite(v) ? v : 0.0);

	if (n > 0 && n < 37 && !strpbrk(out, ".eE"))
		memcpy(out + n, ".0", 3);
}

/* The value of s as JSON text into buf (cap bytes): its length, or 0 when
 * it does not fit.  The object json_pack and json_dumps wrote before:
 * the keys of stat_keys in their order, integers as integers and reals as
 * real_text writes them. */
static size_t stats_write(char *buf, size_t cap, const reputation_stats *s)
{
	char up[40], down[40], ttft[40], tps[40];
	int n;

	real_text(up, s->up_s);
	real_text(down, s->down_s);
	real_text(ttft, s->ttft_ms);
	real_text(tps, s->tps);
	n = snprintf(buf, cap, "{\"hb\":%lld,\"up\":%s,\"down\":%s,\"ttft\":%s,\"tps\":%s,"
	    "\"n\":%lld,\"ok\":%lld,\"fo\":%lld,\"srv\":%d}", (long long)s->hb_last, up, down,
	    ttft, tps, (long long)s->speed_n, (long long)s->delivered, (long long)s->failovers,
	    s->served);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Read buf (NUL-terminated) when it is exactly what stats_write writes
 * (keys in its order, plain JSON numbers): true and *out, else false. */
static bool stats_scan(reputation_stats *out, const char *buf)
{
	double v[N_STATS];
	const char *p = buf;

	for (size_t i = 0; i < N_STATS; i++) {
		size_t kl = strlen(stat_keys[i].key), nl;
		char num_buf[40], *end;

		if (*p++ != (i ? ',' : '{') || *p++ != '"' ||
		    strncmp(p, stat_keys[i].key, kl) != 0 || p[kl] != '"' || p[kl + 1] != ':')
			return false;
		p += kl + 2;
		/* a JSON number: optional minus, then a digit; the rest from the
		 * number's characters */
		if (!(*p >= '0' && *p <= '9') && !(*p == '-' && p[1] >= '0' && p[1] <= '9'))
			return false;
		nl = strspn(p, "0123456789+-.eE");
		if (nl == 0 || nl >= sizeof(num_buf))
			return false;
		memcpy(num_buf, p, nl);
		num_buf[nl] = '\0';
		v[i] = strtod(num_buf, &end);
		if (*end != '\0')
			return false;
		if (!isfinite(v[i]) || v[i] < 0)
			v[i] = 0;
		p += nl;
	}
	if (p[0] != '}' || p[1] != '\0')
		return false;
	stats_from_array(out, v);
	return true;
}

int reputation_get(reputation_stats *out, registry *reg, const char *node_id, int64_t now)
{
	char key[REGISTRY_KV_KEY_MAX + 1], buf[REP_VALUE_MAX + 1];
	double v[N_STATS];
	size_t len = 0;
	json_t *o;
	int rc;

	memset(out, 0, sizeof(*out));
	stats_key(key, sizeof(key), node_id);
	rc = registry_kv_get(buf, REP_VALUE_MAX, &len, reg, key, now);
	if (rc == TROOP_ENOTFOUND || rc == TROOP_ETOOLARGE)
		return 0;   /* nothing kept (or not ours): start afresh */
	if (rc != 0)
		return rc;
	buf[len] = '\0';
	if (strlen(buf) == len && stats_scan(out, buf))
		return 0;
	o = json_loadb(buf, len, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return 0;
	}
	for (size_t i = 0; i < N_STATS; i++)
		v[i] = num(o, stat_keys[i].key);
	stats_from_array(out, v);
	json_decref(o);
	return 0;
}

static int stats_put(registry *reg, const char *node_id, const reputation_stats *s,
    int64_t now)
{
	char key[REGISTRY_KV_KEY_MAX + 1], text[REP_VALUE_MAX + 1];
	size_t len = stats_write(text, sizeof(text), s);

	if (len == 0)
		return troop_error_set(TROOP_EINVAL, "reputation: stats value too long");
	stats_key(key, sizeof(key), node_id);
	return registry_kv_put(reg, key, text, len, REP_STATS_TTL_S, 0, now);
}

int reputation_note_heartbeat(reputation_stats *out, registry *reg, const char *node_id,
    int64_t ttl, int64_t now)
{
	reputation_stats s;
	int rc;

	pthread_mutex_lock(&rep_mu);
	if ((rc = reputation_get(&s, reg, node_id, now)) == 0 && now > s.hb_last) {
		/* a heartbeat in the second of the last one changes nothing */
		reputation_heartbeat(&s, ttl, now);
		rc = stats_put(reg, node_id, &s, now);
	}
	pthread_mutex_unlock(&rep_mu);
	if (out)
		*out = s;
	return rc;
}

int reputation_note_report(registry *reg, const char *node_id, const char *job_id,
    const reputation_report *r, int64_t seen_ttl, int64_t now)
{
	char seen[REGISTRY_KV_KEY_MAX + 1];
	reputation_stats s;
	int rc;

	/* once per job: a requester repeating its report counts once */
	snprintf(seen, sizeof(seen), REP_KEY_PREFIX "job:%s", job_id);
	rc = registry_kv_put(reg, seen, "1", 1, seen_ttl > 0 ? seen_ttl : 1, REGISTRY_KV_NX, now);
	if (rc == TROOP_ECONFLICT)
		return 0;
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&rep_mu);
	if ((rc = reputation_get(&s, reg, node_id, now)) == 0) {
		reputation_report_add(&s, r);
		rc = stats_put(reg, node_id, &s, now);
	}
	pthread_mutex_unlock(&rep_mu);
	return rc;
}
