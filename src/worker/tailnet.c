/*
 * tailnet.c - choose the worker's advertised address: --advertise, the
 * tailnet interface addresses, `tailscale ip -4`, loopback for a loopback
 * coordinator.  The rules are in tailnet.h; tailnet_choose is pure and
 * the two functions that touch the system (getifaddrs, the tailscale
 * binary) are kept apart so tests can replace them.
 */
#include "tailnet.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "error.h"
#include "log.h"
#include "subproc.h"

#define TAILSCALE_IFNAME "tailscale0"

/* ---- address classes ----------------------------------------------------- */

static bool v4_in(const struct in_addr *a, uint32_t net, int bits)
{
	uint32_t h = ntohl(a->s_addr);
	uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);

	return (h & mask) == (net & mask);
}

static bool v6_in(const struct in6_addr *a, const unsigned char *prefix, int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a->s6_addr, prefix, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a->s6_addr[whole] & mask) == (prefix[whole] & mask);
}

static const unsigned char ts_v6_prefix[16] = {
	0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0,
};

bool tailnet_in_range(int family, const char *addr)
{
	if (!addr)
		return false;
	if (family == AF_INET) {
		struct in_addr a;
		return inet_pton(AF_INET, addr, &a) == 1 && v4_in(&a, 0x64400000u, 10);
	}
	if (family == AF_INET6) {
		struct in6_addr a;
		return inet_pton(AF_INET6, addr, &a) == 1 && v6_in(&a, ts_v6_prefix, 48);
	}
	return false;
}

/* Addresses never worth advertising: loopback, unspecified, link-local,
 * multicast.  False for unparsable text too. */
static bool usable(int family, const char *addr)
{
	if (family == AF_INET) {
		struct in_addr a;
		if (inet_pton(AF_INET, addr, &a) != 1)
			return false;
		return !v4_in(&a, 0x7f000000u, 8) && !v4_in(&a, 0, 8) &&
		    !v4_in(&a, 0xa9fe0000u, 16) && !v4_in(&a, 0xe0000000u, 4);
	}
	if (family == AF_INET6) {
		struct in6_addr a;
		if (inet_pton(AF_INET6, addr, &a) != 1)
			return false;
		return !IN6_IS_ADDR_LOOPBACK(&a) && !IN6_IS_ADDR_UNSPECIFIED(&a) &&
		    !IN6_IS_ADDR_LINKLOCAL(&a) && !IN6_IS_ADDR_MULTICAST(&a);
	}
	return false;
}

/* 0 (best) .. 3, or -1 when the entry is not a candidate. */
static int addr_rank(const tailnet_if_addr *e)
{
	if (!usable(e->family, e->addr))
		return -1;
	if (strcmp(e->ifname, TAILSCALE_IFNAME) == 0)
		return e->family == AF_INET ? 0 : 1;
	if (tailnet_in_range(e->family, e->addr))
		return e->family == AF_INET ? 2 : 3;
	return -1;
}

static int copy_out(char *out, size_t outlen, const char *s, size_t len)
{
	if (len + 1 > outlen)
		return troop_error_set(TROOP_ETOOLARGE,
		    "advertised address: '%.*s' does not fit in %zu bytes",
		    (int)(len > 64 ? 64 : len), s, outlen);
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

/* ---- coordinator URL host ------------------------------------------------ */

bool tailnet_url_is_loopback(const char *url)
{
	const char *p, *end, *host, *host_end;
	char buf[256];

	if (!url)
		return false;
	p = strstr(url, "://");
	p = p ? p + 3 : url;
	end = p + strcspn(p, "/?#");
	for (const char *q = p; q < end; q++)  /* drop userinfo */
		if (*q == '@')
			p = q + 1;
	if (p < end && *p == '[') {
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(end - host));
		if (!host_end)
			return false;
	} else {
		const char *c1 = memchr(p, ':', (size_t)(end - p));
		const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
		host = p;
		/* Two colons without brackets: a bare IPv6 literal. */
		host_end = (c1 && !c2) ? c1 : end;
	}
	size_t len = (size_t)(host_end - host);
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';

	if (strcasecmp(buf, "localhost") == 0 || strcasecmp(buf, "localhost.") == 0)
		return true;
	struct in_addr a4;
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return v4_in(&a4, 0x7f000000u, 8);
	struct in6_addr a6;
	if (inet_pton(AF_INET6, buf, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&a6))
			return a6.s6_addr[12] == 127;
	}
	return false;
}

/* ---- the choice ---------------------------------------------------------- */

int tailnet_pick_iface(char *out, size_t outlen, const tailnet_if_addr *list, size_t n)
{
	const tailnet_if_addr *best = NULL;
	int best_rank = 99;

	for (size_t i = 0; i < n; i++) {
		int r = addr_rank(&list[i]);
		if (r >= 0 && r < best_rank) {
			best = &list[i];
			best_rank = r;
		}
	}
	if (!best)
		return troop_error_set(TROOP_ENOTFOUND, "no tailnet address on any interface");
	return copy_out(out, outlen, best->addr, strlen(best->addr));
}

/* --advertise: a host name or an IP literal; "[v6]" loses its brackets.
 * Only the shape is checked: it must be something a URL can hold. */
static int check_advertise(char *out, size_t outlen, const char *adv)
{
	size_t len = strlen(adv);
	const char *b = adv;

	if (len >= 2 && adv[0] == '[' && adv[len - 1] == ']') {
		b = adv + 1;
		len -= 2;
	}
	if (len == 0 || len > 253)
		return troop_error_set(TROOP_EINVAL,
		    "--advertise: expected a host name or IP address, got '%.64s'", adv);
	bool colon = false;
	for (size_t i = 0; i < len; i++) {
		char c = b[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' || c == ':';
		if (!ok)
			return troop_error_set(TROOP_EINVAL,
			    "--advertise: expected a host name or IP address without port "
			    "or scheme, got '%.64s'", adv);
		colon |= c == ':';
	}
	if (colon) {
		char tmp[256];
		struct in6_addr a6;

		memcpy(tmp, b, len);
		tmp[len] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return troop_error_set(TROOP_EINVAL,
			    "--advertise: '%.64s' is not an IPv6 address (give the host "
			    "without a port)", adv);
	}
	return copy_out(out, outlen, b, len);
}

int tailnet_choose(char *out, size_t outlen, const char *advertise,
    const tailnet_if_addr *list, size_t n, tailnet_ip_fn ip_fn, void *ip_arg,
    const char *coordinator_url)
{
	int rc;

	if (!out || outlen == 0)
		return troop_error_set(TROOP_EINVAL, "advertised address: no output buffer");
	out[0] = '\0';

	if (advertise && *advertise)
		return check_advertise(out, outlen, advertise);

	rc = tailnet_pick_iface(out, outlen, list, n);
	if (rc != TROOP_ENOTFOUND)
		return rc;

	if (ip_fn) {
		char ip[TAILNET_ADDR_MAX];
		struct in_addr a4;

		rc = ip_fn(ip, sizeof(ip), ip_arg);
		if (rc == 0 && inet_pton(AF_INET, ip, &a4) == 1 && usable(AF_INET, ip))
			return copy_out(out, outlen, ip, strlen(ip));
		if (rc != 0)
			log_debug("tailnet", "source=tailscale skipped=\"%s\"", troop_error_msg());
	}

	if (tailnet_url_is_loopback(coordinator_url))
		return copy_out(out, outlen, "127.0.0.1", 9);

	return troop_error_set(TROOP_EINVAL, "%s", TAILNET_NO_ADDRESS_MSG);
}

/* ---- the system inputs --------------------------------------------------- */

int tailnet_read_ifaces(tailnet_if_addr *out, size_t max, size_t *n)
{
	struct ifaddrs *ifs = NULL;
	int rc = 0;

	*n = 0;
	if (getifaddrs(&ifs) < 0)
		return troop_error_set(TROOP_EIO, "getifaddrs failed");
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		tailnet_if_addr e;
		const void *src;

		if (!i->ifa_addr || !i->ifa_name)
			continue;
		memset(&e, 0, sizeof(e));
		e.family = i->ifa_addr->sa_family;
		if (e.family == AF_INET)
			src = &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
		else if (e.family == AF_INET6)
			src = &((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr;
		else
			continue;
		if (!inet_ntop(e.family, src, e.addr, sizeof(e.addr)))
			continue;
		if (strlen(i->ifa_name) >= sizeof(e.ifname))
			continue;
		strcpy(e.ifname, i->ifa_name);
		if (addr_rank(&e) < 0)
			continue;
		if (*n >= max) {
			rc = troop_error_set(TROOP_ETOOLARGE,
			    "more than %zu tailnet addresses on the interfaces", max);
			break;
		}
		out[(*n)++] = e;
	}
	freeifaddrs(ifs);
	return rc;
}

int tailnet_tailscale_ip(char *out, size_t outlen, void *arg)
{
	static const char *const argv[] = { "tailscale", "ip", "-4", NULL };
	char buf[1024];
	size_t len = 0;
	int status = -1;
	struct in_addr a4;

	if (outlen)
		out[0] = '\0';
	int rc = subproc_capture(buf, sizeof(buf), &len, argv, TAILNET_CMD_TIMEOUT_MS, &status);
	if (rc != 0)
		return rc;
	if (status != 0)
		return troop_error_set(TROOP_EUNAVAIL,
		    "tailscale ip -4: exited with status %d (not logged in?)", status);
	size_t first = strcspn(buf, "\r\n");
	buf[first] = '\0';
	char *b = buf;
	while (*b == ' ' || *b == '\t')
		b++;
	size_t blen = strlen(b);
	while (blen > 0 && (b[blen - 1] == ' ' || b[blen - 1] == '\t'))
		b[--blen] = '\0';
	if (inet_pton(AF_INET, b, &a4) != 1)
		return troop_error_set(TROOP_EINVAL,
		    "tailscale ip -4: expected an IPv4 address, got '%.64s'", b);
	return copy_out(out, outlen, b, blen);
}

int tailnet_resolve(char *out, size_t outlen, const char *advertise,
    const char *coordinator_url)
{
	tailnet_if_addr ifs[TAILNET_IFACES_MAX];
	size_t n = 0;

	if (!(advertise && *advertise)) {
		int rc = tailnet_read_ifaces(ifs, TAILNET_IFACES_MAX, &n);
		if (rc != 0 && rc != TROOP_ETOOLARGE) {
			log_warn("tailnet", "error=\"%s\"", troop_error_msg());
			n = 0;
		}
	}
	int rc = tailnet_choose(out, outlen, advertise, ifs, n, tailnet_tailscale_ip,
	    NULL, coordinator_url);
	if (rc == 0)
		log_info("tailnet", "advertise=%s", out);
	return rc;
}
