/*
 * tailnet.h - the address this worker advertises to the coordinator
 * (DESIGN.md section 8, "Address").
 *
 * Clients reach workers directly over the Tailscale/Headscale tailnet, so
 * the worker must advertise its tailnet address.  The choice, in order:
 *   1. --advertise ADDR, when given (checked for shape only);
 *   2. an address on the interfaces: any usable address on `tailscale0`
 *      first (IPv4 before IPv6), then an IPv4 address in 100.64.0.0/10 on
 *      any interface, then an IPv6 address in fd7a:115c:a1e0::/48 on any
 *      interface (macOS utunN, userspace setups);
 *   3. the first line of `tailscale ip -4`, when the binary is on $PATH;
 *   4. 127.0.0.1, but only when the coordinator URL's host is itself
 *      loopback (127.0.0.0/8, ::1, localhost): a one-machine troop;
 *   5. otherwise TROOP_EINVAL, with a message that says how to fix it.
 *
 * The choice is a pure function (tailnet_choose) over a list of interface
 * addresses and an optional `tailscale ip` callback, so tests feed it fake
 * interfaces; tailnet_read_ifaces (getifaddrs) and tailnet_tailscale_ip
 * (runs the binary) are the real inputs; tailnet_resolve wires them.
 */
#ifndef TROOP_TAILNET_H
#define TROOP_TAILNET_H

#include <stdbool.h>
#include <stddef.h>

#define TAILNET_ADDR_MAX 64      /* text of an address or --advertise host */
#define TAILNET_IFNAME_MAX 32
#define TAILNET_IFACES_MAX 64    /* candidate addresses kept from getifaddrs */
#define TAILNET_CMD_TIMEOUT_MS 3000

#define TAILNET_NO_ADDRESS_MSG "no tailnet address found: join the tailnet with " \
	"'tailscale up --login-server URL', or pass --advertise ADDR"

/* One address on one interface.  family is AF_INET or AF_INET6; addr is
 * the numeric text form ("100.101.42.17", "fd7a:115c:a1e0::1"). */
typedef struct tailnet_if_addr {
	char ifname[TAILNET_IFNAME_MAX];
	int family;
	char addr[TAILNET_ADDR_MAX];
} tailnet_if_addr;

/* Writes the address `tailscale ip -4` (or a fake) gives into out
 * (capacity outlen).  Returns 0, or a negative troop_err when there is
 * none.  arg is passed through. */
typedef int (*tailnet_ip_fn)(char *out, size_t outlen, void *arg);

/* Whether `addr` (text, of `family`) is in 100.64.0.0/10 (AF_INET) or
 * fd7a:115c:a1e0::/48 (AF_INET6).  False for anything unparsable.  Pure. */
bool tailnet_in_range(int family, const char *addr);

/* Whether the host of `url` ("http://127.0.0.1:8420", "http://[::1]:8420",
 * "http://localhost:8420/x", "127.0.0.2:8420" without a scheme too) is
 * loopback: 127.0.0.0/8, ::1, ::ffff:127.x.y.z, or "localhost" (any case,
 * trailing dot allowed).  NULL or unparsable: false.  Pure. */
bool tailnet_url_is_loopback(const char *url);

/* The best interface address in list[0..n-1] by rules 2 above; ties go to
 * the earlier entry.  Loopback, link-local, unspecified and unparsable
 * addresses are never chosen.  Returns 0 with out filled, TROOP_ENOTFOUND
 * when none qualifies, TROOP_ETOOLARGE if out is too small.  Pure. */
int tailnet_pick_iface(char *out, size_t outlen, const tailnet_if_addr *list, size_t n);

/* The whole choice, rules 1 to 5.  advertise: the --advertise value or
 * NULL/"" (an IPv6 literal may be given in brackets, which are removed);
 * list/n: interface addresses; ip_fn: called only when the interfaces give
 * nothing (NULL: skip rule 3); coordinator_url: for rule 4 (may be NULL).
 * Returns 0 with out filled (always a bare host or address, no port);
 * TROOP_EINVAL for a malformed --advertise (message names the flag) or when
 * nothing is found (message TAILNET_NO_ADDRESS_MSG); TROOP_ETOOLARGE when
 * out is too small.  Pure apart from what ip_fn does. */
int tailnet_choose(char *out, size_t outlen, const char *advertise,
    const tailnet_if_addr *list, size_t n, tailnet_ip_fn ip_fn, void *ip_arg,
    const char *coordinator_url);

/* The machine's candidate interface addresses via getifaddrs: every
 * address on tailscale0 and every in-range address elsewhere (others are
 * dropped, so the list stays small).  *out (capacity max) / *n.  Returns 0,
 * TROOP_EIO (getifaddrs failed) or TROOP_ETOOLARGE (more than max
 * candidates), message set.  Thread-safe. */
int tailnet_read_ifaces(tailnet_if_addr *out, size_t max, size_t *n);

/* A tailnet_ip_fn that runs `tailscale ip -4` from $PATH (no shell, with
 * TAILNET_CMD_TIMEOUT_MS) and returns its first line if it is an IPv4
 * address.  Returns 0, TROOP_ENOTFOUND (no binary), TROOP_EUNAVAIL
 * (non-zero exit, e.g. logged out), TROOP_ETIMEOUT or TROOP_EINVAL (output
 * not an address).  arg is unused.  Thread-safe. */
int tailnet_tailscale_ip(char *out, size_t outlen, void *arg);

/* tailnet_choose over tailnet_read_ifaces and tailnet_tailscale_ip: the
 * address the worker advertises.  Returns as tailnet_choose (a getifaddrs
 * failure is logged and treated as no interfaces).  Blocks for at most
 * about TAILNET_CMD_TIMEOUT_MS.  Thread-safe. */
int tailnet_resolve(char *out, size_t outlen, const char *advertise,
    const char *coordinator_url);

#endif
