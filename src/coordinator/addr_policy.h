/*
 * addr_policy.h - which addresses a node may advertise in its heartbeat
 * (issue 16 item 3).  The coordinator hands a node's advertised address to
 * every client it sends there: a node that could advertise any address
 * could point clients at their own `troop up` (nested authorizations that
 * lock their credits), at loopback, link-local, multicast or LAN services.
 *
 * Allowed by default: the tailnet ranges, 100.64.0.0/10 and
 * fd7a:115c:a1e0::/48; loopback (127.0.0.0/8, ::1) only when the
 * coordinator itself listens on a loopback address (a one-machine troop).
 * --allow-addresses CIDR,... adds ranges (a LAN, link-local, loopback).
 * Never allowed, whatever the flag says: the unspecified address, multicast
 * and broadcast.  IPv4-mapped IPv6 addresses are judged as IPv4.
 *
 * An addr_policy is built once at start and read-only afterwards: the
 * check is thread-safe.
 */
#ifndef TROOP_ADDR_POLICY_H
#define TROOP_ADDR_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADDR_POLICY_MAX 64

typedef struct {
	uint8_t addr[16];   /* IPv4 as ::ffff:a.b.c.d */
	int prefix;         /* bits, over the 128-bit form */
} addr_cidr;

typedef struct {
	addr_cidr allow[ADDR_POLICY_MAX];
	size_t n;
} addr_policy;

/* The defaults, loopback when `listen` ("host:port", "[v6]:port") is a
 * loopback address, then each of `extra` (n_extra strings, each one or
 * more comma-separated "ADDR/BITS" or "ADDR").  Returns 0 or TROOP_EINVAL
 * naming the bad entry. */
int addr_policy_init(addr_policy *p, const char *listen, const char *const *extra,
    size_t n_extra);

/* Whether a node may advertise `ip`.  0, or TROOP_EFORBIDDEN with a message
 * saying why (TROOP_EINVAL when `ip` is not an address at all). */
int addr_policy_check(const addr_policy *p, const char *ip);

#endif
