/*
 * addr_policy.c - the advertised-address policy of addr_policy.h.  Every
 * address is held in its 128-bit IPv6 form (IPv4 mapped into
 * ::ffff:0:0/96) so that one prefix match serves both families.
 */
#include "addr_policy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"

static const uint8_t v4_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Parse an IPv4 or IPv6 address into its 128-bit form.  *v4 says which. */
static bool parse_ip(uint8_t out[16], bool *v4, const char *s)
{
	uint8_t b4[4];

	if (inet_pton(AF_INET, s, b4) == 1) {
		memcpy(out, v4_prefix, 12);
		memcpy(out + 12, b4, 4);
		*v4 = true;
		return true;
	}
	if (inet_pton(AF_INET6, s, out) == 1) {
		*v4 = memcmp(out, v4_prefix, 12) == 0;
		return true;
	}
	return false;
}

static bool in_cidr(const uint8_t a[16], const addr_cidr *c)
{
	int bits = c->prefix, i = 0;

	for (; bits >= 8; bits -= 8, i++)
		if (a[i] != c->addr[i])
			return false;
	if (bits > 0) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits));
		if ((a[i] & mask) != (c->addr[i] & mask))
			return false;
	}
	return true;
}

/* "ADDR/BITS" or "ADDR" (a single address) into *c. */
static int parse_cidr(addr_cidr *c, const char *text, size_t len)
{
	char buf[80];
	const char *slash;
	bool v4 = false;
	long bits;
	char *end;

	if (len == 0 || len >= sizeof(buf))
		return troop_error_set(TROOP_EINVAL, "--allow-addresses: '%.*s' is not an "
		    "address range (want ADDR/BITS)", (int)(len < 60 ? len : 60), text);
	memcpy(buf, text, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash)
		buf[slash - buf] = '\0';
	if (!parse_ip(c->addr, &v4, buf))
		return troop_error_set(TROOP_EINVAL, "--allow-addresses: '%s' is not an IPv4 or "
		    "IPv6 address", buf);
	if (!slash) {
		c->prefix = 128;
		return 0;
	}
	bits = strtol(slash + 1, &end, 10);
	if (*end != '\0' || end == slash + 1 || bits < 0 || bits > (v4 ? 32 : 128))
		return troop_error_set(TROOP_EINVAL, "--allow-addresses: '/%s' is not a prefix "
		    "length for %s", slash + 1, buf);
	c->prefix = (int)bits + (v4 ? 96 : 0);
	return 0;
}

static int add(addr_policy *p, const char *text, size_t len)
{
	if (p->n >= ADDR_POLICY_MAX)
		return troop_error_set(TROOP_EINVAL, "--allow-addresses: at most %d ranges",
		    ADDR_POLICY_MAX);
	if (parse_cidr(&p->allow[p->n], text, len) != 0)
		return TROOP_EINVAL;
	p->n++;
	return 0;
}

int addr_policy_init(addr_policy *p, const char *listen, const char *const *extra,
    size_t n_extra)
{
	static const char *const defaults[] = { "100.64.0.0/10", "fd7a:115c:a1e0::/48" };
	int rc;

	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if ((rc = add(p, defaults[i], strlen(defaults[i]))) != 0)
			return rc;
	if (config_listen_is_loopback(listen) &&
	    ((rc = add(p, "127.0.0.0/8", 11)) != 0 || (rc = add(p, "::1", 3)) != 0))
		return rc;
	for (size_t i = 0; i < n_extra; i++) {
		const char *s = extra[i];
		for (;;) {
			size_t len = strcspn(s, ",");
			const char *start = s, *next = s + len;
			while (len > 0 && *start == ' ') {
				start++;
				len--;
			}
			while (len > 0 && start[len - 1] == ' ')
				len--;
			if ((rc = add(p, start, len)) != 0)
				return rc;
			if (*next != ',')
				break;
			s = next + 1;
		}
	}
	return 0;
}

int addr_policy_check(const addr_policy *p, const char *ip)
{
	uint8_t a[16];
	bool v4 = false;

	if (!ip || !parse_ip(a, &v4, ip))
		return troop_error_set(TROOP_EINVAL,
		    "field 'tailscale_ip' must be an IPv4 or IPv6 address");
	/* never: nobody can be reached there, or everybody is */
	if (v4 ? (a[12] == 0 || a[12] >= 224) :
	    (a[0] == 0xff || memcmp(a, in6addr_any.s6_addr, 16) == 0))
		return troop_error_set(TROOP_EFORBIDDEN, "address %s cannot be advertised: it is "
		    "unspecified, multicast or broadcast", ip);
	for (size_t i = 0; i < p->n; i++)
		if (in_cidr(a, &p->allow[i]))
			return 0;
	return troop_error_set(TROOP_EFORBIDDEN, "address %s is outside the ranges this "
	    "network allows nodes to advertise (the tailnet, 100.64.0.0/10 and "
	    "fd7a:115c:a1e0::/48; the coordinator's --allow-addresses adds more)", ip);
}
