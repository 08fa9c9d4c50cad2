/*
 * up_self.c - `troop up` never sends a request to itself (issue 16 item 3):
 * a node that advertised the address of the user's own proxy turned one
 * request into a chain of nested authorizations, each locking credits.
 * The coordinator refuses such addresses too (addr_policy.h); this is the
 * client's own check, for a coordinator that does not.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "up.h"

/* Whether `ip` (parsed) is an address of one of this machine's interfaces. */
static bool local_address(int family, const void *addr)
{
	struct ifaddrs *ifs = NULL, *i;
	bool found = false;

	if (getifaddrs(&ifs) != 0)
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family)
			continue;
		if (family == AF_INET)
			found = memcmp(&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, addr,
			    4) == 0;
		else
			found = memcmp(&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr, addr,
			    16) == 0;
	}
	freeifaddrs(ifs);
	return found;
}

bool up_target_is_self(const up_server *s, const char *ip, long long port)
{
	unsigned char a[16];

	if (!ip || s->listen_port <= 0 || port != s->listen_port)
		return false;
	if (inet_pton(AF_INET, ip, a) == 1)
		return a[0] == 127 || a[0] == 0 || local_address(AF_INET, a);
	if (inet_pton(AF_INET6, ip, a) != 1)
		return false;
	if (memcmp(a, in6addr_loopback.s6_addr, 16) == 0 ||
	    memcmp(a, in6addr_any.s6_addr, 16) == 0)
		return true;
	/* ::ffff:a.b.c.d is the IPv4 address */
	if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
		return a[12] == 127 || a[12] == 0 || local_address(AF_INET, a + 12);
	return local_address(AF_INET6, a);
}
