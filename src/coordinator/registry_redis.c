/*
 * registry_redis.c - the registry on Redis (hiredis), shared by any number
 * of coordinators (DESIGN.md section 11).  Needs Redis 5.0 or newer
 * (scripts that write after reading); not Redis Cluster (scripts touch
 * keys they compute).
 *
 * URL: redis://[[user]:password@]host[:port][/db][?prefix=P&timeout_ms=N]
 *      unix:///path/to/redis.sock[?db=N&prefix=P&timeout_ms=N]
 * Every key starts with the prefix (default "troop:"), so several
 * deployments or test suites can share one server.  Key layout (P = the
 * prefix; E = expires_at on the caller's clock, which decides liveness;
 * Redis TTLs only reclaim memory a little later):
 *
 *   P node:<id>     hash: f (fixed fields, JSON), m (models, JSON),
 *                   x (raw heartbeat JSON), a (active jobs), e (E),
 *                   d (durable facts, JSON; replaced alone by
 *                   registry_set_node_facts), and
 *                   the index entries it owns: n:<model name> -> content
 *                   hash, h:<content hash> -> 1; PEXPIRE ttl + 5 s
 *   P nodes         zset: node id -> E (count, listing, sweep)
 *   P model:<name>  zset: node id -> E, the nodes listing that name
 *   P hash:<hash>   zset: node id -> E, the nodes listing that hash
 *   P mh:<len>:<name><hash>  zset: node id -> E, per (name, hash) pair
 *   P mhash:<name>  hash: content hash -> size_bytes, the pairs that exist
 *   P mc:<len>:<name><sig>  zset: node id -> E, per (name, capabilities)
 *                   pair; sig is "<context length>.<caps>.<endpoints>"
 *                   (decimal), the record's field c:<name> names it
 *   P mcaps:<name>  hash: sig -> 1, the pairs that exist
 *   P lnodes, P lm:<name>, P lh:<hash>  zsets, every score 0: the same
 *                   node ids as nodes, model:<name> and hash:<hash>, in
 *                   id (byte) order, for paging (/peers) with ZRANGEBYLEX
 *   P models        set of model names that have index entries
 *   P nonce:<keyid>\x1f<nonce>   string: expiry; PX window + 5 s
 *   P rate:<key>    hash: c (count), e (end of the window); PX
 *   P kv:<key>      hash: v (value), e (expiry); PX
 *   P z:nonce, P z:rate, P z:kv  zsets: entry -> expiry, for the caps on
 *                   live entries and for registry_sweep
 *   P os:<set>, P oe:<set>  zsets: member -> score, member -> expiry, the
 *                   ordered sets with expiring members (wait queue, holds)
 *   P q:<store>:<slot>:<owner>  zset: entry -> expiry, the live entries
 *                   counted against one owner (slot 0: the signer or the
 *                   record's owner, 1: the source address) for the
 *                   per-owner quotas; kv records name theirs in fields
 *                   o and a, so that take and delete release them
 *
 * Index entries are scored by expiry, so "live" is a range query and the
 * model listing counts with ZCARD after trimming, O(names x hashes), never
 * a walk over nodes.  An entry is followed only while the record it names
 * still lists that model: entries left behind by a record Redis dropped
 * early, or replaced with other models, are skipped and deleted on read;
 * expired ones are trimmed by score.  Everything that reads and writes is
 * a Lua script, so each call is one atomic step on the server whatever
 * other coordinators do; scripts are loaded at open and re-sent with EVAL
 * when the server lost them (a restart).
 *
 * Threads: the handle is shared.  A mutex-protected pool keeps idle
 * connections; a call takes one (or opens one), and gives it back unless
 * it failed at the connection level, in which case it is dropped and the
 * next call connects anew.  An idle connection the server closed (a
 * restart) is noticed with a zero-timeout poll before use and replaced,
 * so the first call after a restart does not fail.  While Redis is down
 * every call returns TROOP_EUNAVAIL after at most the connect timeout
 * (2 s, ?connect_timeout_ms=); a command waits at most ?timeout_ms=
 * (5 s).  SIGPIPE is blocked in the calling thread around each command
 * (hiredis writes with write()).
 */
#ifdef TROOP_HAVE_HIREDIS

#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "jscan.h"
#include "log.h"
#include "registry.h"

extern const struct registry_ops registry_redis_ops;

#define PREFIX_DEFAULT "troop:"
#define PREFIX_MAX 64
#define HOST_MAX 255
#define TTL_SLACK_MS 5000     /* Redis keeps records this much past their ttl */
#define POOL_IDLE_MAX 64      /* idle connections kept */
#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 5000
#define SWEEP_BATCH 256       /* nodes or entries dropped per script call */
#define PUT_SWEEP 64          /* expired nodes dropped per put */
#define STORE_SWEEP 8         /* expired entries dropped per store insert */
#define STR_(x) #x
#define STR(x) STR_(x)

static int nomem(void)
{
	return troop_error_set(TROOP_ENOMEM, "registry: out of memory");
}

/* ---- Lua scripts ----------------------------------------------------------------- */

/* Node helpers.  mhkey: the per (model name, content hash) set; the
 * name's length keeps any two pairs apart.  unindex: remove a node's
 * current record from every scored index it is in (the record lists them
 * as fields n:<name> -> hash and h:<hash>), and from the id-ordered ones
 * too when lex is true; returns the id-ordered sets the record is in.
 * drop: the record and all its entries. */
#define LUA_NODE_PRELUDE \
	"local P = ARGV[1]\n" \
	"local function mhkey(name, hash)\n" \
	"  return P .. 'mh:' .. string.len(name) .. ':' .. name .. hash\n" \
	"end\n" \
	"local function mckey(name, sig)\n" \
	"  return P .. 'mc:' .. string.len(name) .. ':' .. name .. sig\n" \
	"end\n" \
	"local function unindex(id, lex)\n" \
	"  local nk = P .. 'node:' .. id\n" \
	"  local names, caps, lexs = {}, {}, {}\n" \
	"  for _, f in ipairs(redis.call('HKEYS', nk)) do\n" \
	"    local t = string.sub(f, 1, 2)\n" \
	"    if t == 'n:' then names[#names + 1] = f\n" \
	"    elseif t == 'c:' then caps[#caps + 1] = f\n" \
	"    elseif t == 'h:' then\n" \
	"      redis.call('ZREM', P .. 'hash:' .. string.sub(f, 3), id)\n" \
	"      lexs[#lexs + 1] = P .. 'lh:' .. string.sub(f, 3)\n" \
	"    end\n" \
	"  end\n" \
	"  if #names > 0 then\n" \
	"    local hashes = redis.call('HMGET', nk, unpack(names))\n" \
	"    for i, f in ipairs(names) do\n" \
	"      local name = string.sub(f, 3)\n" \
	"      redis.call('ZREM', P .. 'model:' .. name, id)\n" \
	"      lexs[#lexs + 1] = P .. 'lm:' .. name\n" \
	"      if hashes[i] then redis.call('ZREM', mhkey(name, hashes[i]), id) end\n" \
	"    end\n" \
	"  end\n" \
	"  if #caps > 0 then\n" \
	"    local sigs = redis.call('HMGET', nk, unpack(caps))\n" \
	"    for i, f in ipairs(caps) do\n" \
	"      if sigs[i] then redis.call('ZREM', mckey(string.sub(f, 3), sigs[i]), id) end\n" \
	"    end\n" \
	"  end\n" \
	"  if lex then\n" \
	"    for _, k in ipairs(lexs) do redis.call('ZREM', k, id) end\n" \
	"  end\n" \
	"  return lexs\n" \
	"end\n" \
	"local function drop(id)\n" \
	"  unindex(id, true)\n" \
	"  redis.call('DEL', P .. 'node:' .. id)\n" \
	"  redis.call('ZREM', P .. 'nodes', id)\n" \
	"  redis.call('ZREM', P .. 'lnodes', id)\n" \
	"end\n" \
	"local function sweep(upto, limit)\n" \
	"  local ids = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', upto, 'LIMIT', 0, limit)\n" \
	"  for _, id in ipairs(ids) do drop(id) end\n" \
	"  return #ids\n" \
	"end\n"

/* ARGV: P id now expires_at real_ttl_ms max_nodes f m x has_x active d k
 *       then k times: name hash size sig ("" when nothing is known).
 *       -> {0} or {1, live} (full) */
static const char lua_put[] = LUA_NODE_PRELUDE
	"local id, now, exp = ARGV[2], ARGV[3], ARGV[4]\n"
	"sweep(now, " STR(PUT_SWEEP) ")\n"
	"local nk = P .. 'node:' .. id\n"
	"local lexs, keep = {}, {}\n"
	"if redis.call('ZSCORE', P .. 'nodes', id) then\n"
	"  lexs = unindex(id, false)\n"
	"else\n"
	"  local live = redis.call('ZCOUNT', P .. 'nodes', '(' .. now, '+inf')\n"
	"  if live >= tonumber(ARGV[6]) then return {1, live} end\n"
	"end\n"
	"redis.call('DEL', nk)\n"
	"local fields = {'f', ARGV[7], 'm', ARGV[8], 'a', ARGV[11], 'e', exp, 'd', ARGV[12]}\n"
	"if ARGV[10] == '1' then fields[#fields + 1] = 'x'; fields[#fields + 1] = ARGV[9] end\n"
	"local seen_n, seen_h = {}, {}\n"
	"for i = 0, tonumber(ARGV[13]) - 1 do\n"
	"  local name, hash = ARGV[14 + 4 * i], ARGV[15 + 4 * i]\n"
	"  local size, sig = ARGV[16 + 4 * i], ARGV[17 + 4 * i]\n"
	"  if not seen_n[name] then\n"
	"    seen_n[name] = true\n"
	"    fields[#fields + 1] = 'n:' .. name; fields[#fields + 1] = hash\n"
	"    if sig ~= '' then\n"
	"      fields[#fields + 1] = 'c:' .. name; fields[#fields + 1] = sig\n"
	"      redis.call('ZADD', mckey(name, sig), exp, id)\n"
	"      redis.call('HSET', P .. 'mcaps:' .. name, sig, 1)\n"
	"    end\n"
	"    redis.call('ZADD', P .. 'model:' .. name, exp, id)\n"
	"    keep[P .. 'lm:' .. name] = true\n"
	"    redis.call('ZADD', P .. 'lm:' .. name, 0, id)\n"
	"    redis.call('ZADD', mhkey(name, hash), exp, id)\n"
	"    redis.call('HSET', P .. 'mhash:' .. name, hash, size)\n"
	"    redis.call('SADD', P .. 'models', name)\n"
	"  end\n"
	"  if hash ~= '' and not seen_h[hash] then\n"
	"    seen_h[hash] = true\n"
	"    fields[#fields + 1] = 'h:' .. hash; fields[#fields + 1] = '1'\n"
	"    redis.call('ZADD', P .. 'hash:' .. hash, exp, id)\n"
	"    keep[P .. 'lh:' .. hash] = true\n"
	"    redis.call('ZADD', P .. 'lh:' .. hash, 0, id)\n"
	"  end\n"
	"end\n"
	"for _, k in ipairs(lexs) do\n"
	"  if not keep[k] then redis.call('ZREM', k, id) end\n"
	"end\n"
	"redis.call('HSET', nk, unpack(fields))\n"
	"redis.call('PEXPIRE', nk, ARGV[5])\n"
	"redis.call('ZADD', P .. 'nodes', exp, id)\n"
	"redis.call('ZADD', P .. 'lnodes', 0, id)\n"
	"return {0}\n";

/* ARGV: P id -> 1 removed, 0 not there */
static const char lua_remove[] = LUA_NODE_PRELUDE
	"local id = ARGV[2]\n"
	"if not redis.call('ZSCORE', P .. 'nodes', id) and "
	"redis.call('EXISTS', P .. 'node:' .. id) == 0 then return 0 end\n"
	"drop(id)\n"
	"return 1\n";

/* ARGV: P model now max rand want_m want_x
 * -> flat array, 7 per node: id f a e d m x (m, x nil when not asked).
 * An index entry counts when its score (the expiry) is in the future and
 * the record it names still lists that model; others are removed. */
static const char lua_find[] =
	"local P, model, now = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
	"local max, rnd = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
	"local wm, wx = ARGV[6] == '1', ARGV[7] == '1'\n"
	"local flds = {'', 'f', 'a', 'e', 'd'}\n"
	"if wm then flds[#flds + 1] = 'm' end\n"
	"if wx then flds[#flds + 1] = 'x' end\n"
	"local out, count = {}, 0\n"
	"local function push(id, r)\n"
	"  out[#out + 1] = id; out[#out + 1] = r[2]; out[#out + 1] = r[3]; out[#out + 1] = r[4]\n"
	"  out[#out + 1] = r[5] or false\n"
	"  out[#out + 1] = wm and r[6] or false\n"
	"  out[#out + 1] = wx and r[wm and 7 or 6] or false\n"
	"  count = count + 1\n"
	"end\n"
	/* walk ranks [first, first + n) of zset z from a random point, wrapping;
	 * check(id) returns the record fields or nil */
	"local function walk(z, first, n, check)\n"
	"  local stale, visited, start = {}, 0, rnd % n\n"
	"  while count < max and visited < n do\n"
	"    local s = (start + visited) % n\n"
	"    local e = math.min(s + math.min(max - count, n - visited) - 1, n - 1)\n"
	"    for _, id in ipairs(redis.call('ZRANGE', z, first + s, first + e)) do\n"
	"      local r = check(id)\n"
	"      if r then push(id, r) else stale[#stale + 1] = id end\n"
	"    end\n"
	"    visited = visited + (e - s + 1)\n"
	"  end\n"
	"  return stale\n"
	"end\n"
	"if model == '' then\n"
	"  local z = P .. 'nodes'\n"
	"  local live = redis.call('ZCOUNT', z, '(' .. ARGV[3], '+inf')\n"
	"  if live == 0 then return out end\n"
	"  flds[1] = 'e'\n"
	"  walk(z, redis.call('ZCARD', z) - live, live, function(id)\n"
	"    local r = redis.call('HMGET', P .. 'node:' .. id, unpack(flds))\n"
	"    if r[2] and tonumber(r[4]) > now then return r end\n"
	"  end)\n"
	"  return out\n"
	"end\n"
	"local function scan(z, field)\n"
	"  redis.call('ZREMRANGEBYSCORE', z, '-inf', ARGV[3])\n"
	"  local n = redis.call('ZCARD', z)\n"
	"  if n == 0 then return 0 end\n"
	"  flds[1] = field\n"
	"  local stale = walk(z, 0, n, function(id)\n"
	"    local r = redis.call('HMGET', P .. 'node:' .. id, unpack(flds))\n"
	"    if r[1] and r[2] and tonumber(r[4]) > now then return r end\n"
	"  end)\n"
	"  for _, id in ipairs(stale) do\n"
	"    if redis.call('HEXISTS', P .. 'node:' .. id, field) == 0 then\n"
	"      redis.call('ZREM', z, id)\n"
	"    end\n"
	"  end\n"
	"  return n\n"
	"end\n"
	"if scan(P .. 'model:' .. model, 'n:' .. model) == 0 then\n"
	"  scan(P .. 'hash:' .. model, 'h:' .. model)\n"
	"end\n"
	"return out\n";

/* ARGV: P model now max after want_m want_x
 * -> flat array as lua_find, 7 per node, in id order: the live nodes
 * (serving model, matched as lua_find) whose id sorts after `after` ('' for
 * the first page), at most max.  The ids come from the id-ordered set of
 * the model (lm:, or lh: when the name has no live node and may be a
 * content hash; lnodes for all), a range from `after` on: O(log n + the
 * page), not a pass over the model.  An entry whose record no longer
 * lists the model is deleted on the way; an expired one is left for the
 * sweep. */
static const char lua_list[] =
	"local P, model, now = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
	"local max, after = tonumber(ARGV[4]), ARGV[5]\n"
	"local wm, wx = ARGV[6] == '1', ARGV[7] == '1'\n"
	"local z, field = P .. 'lnodes', 'e'\n"
	"if model ~= '' then\n"
	"  z, field = P .. 'lm:' .. model, 'n:' .. model\n"
	"  if redis.call('ZCOUNT', P .. 'model:' .. model, '(' .. ARGV[3], '+inf') == 0 then\n"
	"    z, field = P .. 'lh:' .. model, 'h:' .. model\n"
	"  end\n"
	"end\n"
	"local flds = {field, 'f', 'a', 'e', 'd'}\n"
	"if wm then flds[#flds + 1] = 'm' end\n"
	"if wx then flds[#flds + 1] = 'x' end\n"
	"local out, count, lo = {}, 0, '-'\n"
	"if after ~= '' then lo = '(' .. after end\n"
	"while count < max do\n"
	"  local want = math.min(math.max(max - count, 64), 1024)\n"
	"  local ids = redis.call('ZRANGEBYLEX', z, lo, '+', 'LIMIT', 0, want)\n"
	"  for _, id in ipairs(ids) do\n"
	"    if count >= max then break end\n"
	"    local r = redis.call('HMGET', P .. 'node:' .. id, unpack(flds))\n"
	"    if r[1] and r[2] and tonumber(r[4]) > now then\n"
	"      out[#out + 1] = id; out[#out + 1] = r[2]; out[#out + 1] = r[3]\n"
	"      out[#out + 1] = r[4]; out[#out + 1] = r[5] or false\n"
	"      out[#out + 1] = wm and r[6] or false\n"
	"      out[#out + 1] = wx and r[wm and 7 or 6] or false\n"
	"      count = count + 1\n"
	"    elseif not r[1] then\n"
	"      redis.call('ZREM', z, id)\n"
	"    end\n"
	"  end\n"
	"  if #ids < want then break end\n"
	"  lo = '(' .. ids[#ids]\n"
	"end\n"
	"return out\n";

/* ARGV: P now -> flat array, 5 per model: name live_count hash size sigs
 * (the live capability sigs, joined by ',').
 * Counts are the entries whose expiry is in the future: O(names x hashes),
 * not O(nodes).  Expired entries and empty names are cleaned on the way. */
static const char lua_models[] = LUA_NODE_PRELUDE
	"local now = ARGV[2]\n"
	"local out = {}\n"
	"for _, name in ipairs(redis.call('SMEMBERS', P .. 'models')) do\n"
	"  local idx, hk = P .. 'model:' .. name, P .. 'mhash:' .. name\n"
	"  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)\n"
	"  local live = redis.call('ZCARD', idx)\n"
	"  local hs = redis.call('HGETALL', hk)\n"
	"  local best, bestc, bests = nil, 0, 0\n"
	"  for i = 1, #hs, 2 do\n"
	"    local h, size = hs[i], hs[i + 1]\n"
	"    local k = mhkey(name, h)\n"
	"    if live == 0 then\n"
	"      redis.call('DEL', k)\n"
	"    else\n"
	"      redis.call('ZREMRANGEBYSCORE', k, '-inf', now)\n"
	"      local c = redis.call('ZCARD', k)\n"
	"      if c == 0 then\n"
	"        redis.call('HDEL', hk, h)\n"
	/* the hash most nodes report; among equals a non-empty one, then the
	 * smallest, so every coordinator gives the same answer */
	"      elseif best == nil or c > bestc or (c == bestc and ((best == '' and h ~= '') or\n"
	"          (h ~= '' and best ~= '' and h < best))) then\n"
	"        best, bestc, bests = h, c, size\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  local ck, sigs = P .. 'mcaps:' .. name, {}\n"
	"  for _, sg in ipairs(redis.call('HKEYS', ck)) do\n"
	"    local k = mckey(name, sg)\n"
	"    if live == 0 then\n"
	"      redis.call('DEL', k)\n"
	"    else\n"
	"      redis.call('ZREMRANGEBYSCORE', k, '-inf', now)\n"
	"      if redis.call('ZCARD', k) == 0 then redis.call('HDEL', ck, sg)\n"
	"      else sigs[#sigs + 1] = sg end\n"
	"    end\n"
	"  end\n"
	"  if live == 0 then\n"
	"    redis.call('DEL', hk)\n"
	"    redis.call('DEL', ck)\n"
	"    redis.call('DEL', P .. 'lm:' .. name)\n"
	"    redis.call('SREM', P .. 'models', name)\n"
	"  else\n"
	"    out[#out + 1] = name; out[#out + 1] = live\n"
	"    out[#out + 1] = best or ''; out[#out + 1] = bests\n"
	"    out[#out + 1] = table.concat(sigs, ',')\n"
	"  end\n"
	"end\n"
	"return out\n";

/* ARGV: P id delta -> 1, or nil when the node is not there */
static const char lua_active[] =
	"local nk = ARGV[1] .. 'node:' .. ARGV[2]\n"
	"if redis.call('EXISTS', nk) == 0 then return false end\n"
	"local v = redis.call('HINCRBY', nk, 'a', ARGV[3])\n"
	"if v < 0 then redis.call('HSET', nk, 'a', 0)\n"
	"elseif v > 2147483647 then redis.call('HSET', nk, 'a', 2147483647) end\n"
	"return 1\n";

/* ARGV: P id now d -> 1 replaced, 0 no live node */
static const char lua_facts[] =
	"local nk = ARGV[1] .. 'node:' .. ARGV[2]\n"
	"local e = redis.call('HGET', nk, 'e')\n"
	"if not e or tonumber(e) <= tonumber(ARGV[3]) then return 0 end\n"
	"redis.call('HSET', nk, 'd', ARGV[4])\n"
	"return 1\n";

/* ARGV: P now limit -> nodes dropped */
static const char lua_sweep_nodes[] = LUA_NODE_PRELUDE
	"return sweep(ARGV[2], tonumber(ARGV[3]))\n";

/* Store helpers: entries of store S are keys P S:<k>, their expiry in
 * zset P z:S. */
#define LUA_STORE_PRELUDE \
	"local P = ARGV[1]\n" \
	"local function trim(store, upto, limit)\n" \
	"  local z = P .. 'z:' .. store\n" \
	"  local ids\n" \
	"  if limit then ids = redis.call('ZRANGEBYSCORE', z, '-inf', upto, 'LIMIT', 0, limit)\n" \
	"  else ids = redis.call('ZRANGEBYSCORE', z, '-inf', upto) end\n" \
	"  for _, k in ipairs(ids) do\n" \
	"    redis.call('DEL', P .. store .. ':' .. k)\n" \
	"    redis.call('ZREM', z, k)\n" \
	"  end\n" \
	"  return #ids\n" \
	"end\n" \
	"local function room(store, upto, max)\n" \
	"  local z = P .. 'z:' .. store\n" \
	"  if redis.call('ZCARD', z) < max then return true end\n" \
	"  trim(store, upto, nil)\n" \
	"  return redis.call('ZCARD', z) < max\n" \
	"end\n"

/* Quota helpers (after a store prelude, or alone with P set): the owner
 * zsets of store S, slot N, owner O.  qfull: whether O already has
 * `quota` live entries besides `member`. */
#define LUA_QUOTA_PRELUDE \
	"local function qkey(store, slot, owner)\n" \
	"  return P .. 'q:' .. store .. ':' .. slot .. ':' .. owner\n" \
	"end\n" \
	"local function qfull(store, slot, owner, member, now, quota)\n" \
	"  if owner == '' then return false end\n" \
	"  local z = qkey(store, slot, owner)\n" \
	"  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)\n" \
	"  local n = redis.call('ZCARD', z)\n" \
	"  if redis.call('ZSCORE', z, member) then n = n - 1 end\n" \
	"  return n >= tonumber(quota)\n" \
	"end\n" \
	"local function qadd(store, slot, owner, member, exp, ttl_ms)\n" \
	"  if owner == '' then return end\n" \
	"  local z = qkey(store, slot, owner)\n" \
	"  redis.call('ZADD', z, exp, member)\n" \
	"  if redis.call('PTTL', z) < tonumber(ttl_ms) then redis.call('PEXPIRE', z, ttl_ms) end\n" \
	"end\n" \
	"local function qrem(store, slot, owner, member)\n" \
	"  if owner and owner ~= '' then redis.call('ZREM', qkey(store, slot, owner), member) end\n" \
	"end\n"

/* ARGV: P store now limit -> entries dropped */
static const char lua_sweep_store[] = LUA_STORE_PRELUDE
	"return trim(ARGV[2], ARGV[3], tonumber(ARGV[4]))\n";

/* ARGV: P member now expiry real_ttl_ms max signer addr quota_signer quota_addr
 * -> 0 new, 1 seen, 2 full, 3 over a quota */
static const char lua_nonce[] = LUA_STORE_PRELUDE LUA_QUOTA_PRELUDE
	"local now = ARGV[3]\n"
	"trim('nonce', now, " STR(STORE_SWEEP) ")\n"
	"local k = P .. 'nonce:' .. ARGV[2]\n"
	"local v = redis.call('GET', k)\n"
	"if v and tonumber(v) > tonumber(now) then return 1 end\n"
	"if qfull('nonce', 0, ARGV[7], ARGV[2], now, ARGV[9]) or "
	"qfull('nonce', 1, ARGV[8], ARGV[2], now, ARGV[10]) then return 3 end\n"
	"if not room('nonce', now, tonumber(ARGV[6])) then return 2 end\n"
	"redis.call('SET', k, ARGV[4], 'PX', ARGV[5])\n"
	"redis.call('ZADD', P .. 'z:nonce', ARGV[4], ARGV[2])\n"
	"qadd('nonce', 0, ARGV[7], ARGV[2], ARGV[4], ARGV[5])\n"
	"qadd('nonce', 1, ARGV[8], ARGV[2], ARGV[4], ARGV[5])\n"
	"return 0\n";

/* ARGV: P key now window_end real_ttl_ms max_keys max_events
 * -> 0 within the limit, 1 over it, 2 full */
static const char lua_rate[] = LUA_STORE_PRELUDE
	"local now = ARGV[3]\n"
	"trim('rate', now, " STR(STORE_SWEEP) ")\n"
	"local k = P .. 'rate:' .. ARGV[2]\n"
	"local r = redis.call('HMGET', k, 'c', 'e')\n"
	"local c\n"
	"if r[1] and tonumber(r[2]) > tonumber(now) then\n"
	"  c = redis.call('HINCRBY', k, 'c', 1)\n"
	"else\n"
	"  if not room('rate', now, tonumber(ARGV[6])) then return 2 end\n"
	"  redis.call('DEL', k)\n"
	"  redis.call('HSET', k, 'c', 1, 'e', ARGV[4])\n"
	"  redis.call('PEXPIRE', k, ARGV[5])\n"
	"  redis.call('ZADD', P .. 'z:rate', ARGV[4], ARGV[2])\n"
	"  c = 1\n"
	"end\n"
	"if c > tonumber(ARGV[7]) then return 1 end\n"
	"return 0\n";

/* ARGV: P key value now expiry real_ttl_ms nx max owner addr quota_owner quota_addr
 * -> 0 stored, 1 present, 2 full, 3 over a quota */
static const char lua_kv_put[] = LUA_STORE_PRELUDE LUA_QUOTA_PRELUDE
	"local now = ARGV[4]\n"
	"trim('kv', now, " STR(STORE_SWEEP) ")\n"
	"local k = P .. 'kv:' .. ARGV[2]\n"
	"local r = redis.call('HMGET', k, 'e', 'o', 'a')\n"
	"local live = r[1] and tonumber(r[1]) > tonumber(now)\n"
	"if live and ARGV[7] == '1' then return 1 end\n"
	"if qfull('kv', 0, ARGV[9], ARGV[2], now, ARGV[11]) or "
	"qfull('kv', 1, ARGV[10], ARGV[2], now, ARGV[12]) then return 3 end\n"
	"if not live and not room('kv', now, tonumber(ARGV[8])) then return 2 end\n"
	"qrem('kv', 0, r[2], ARGV[2])\n"
	"qrem('kv', 1, r[3], ARGV[2])\n"
	"redis.call('DEL', k)\n"
	"redis.call('HSET', k, 'v', ARGV[3], 'e', ARGV[5], 'o', ARGV[9], 'a', ARGV[10])\n"
	"redis.call('PEXPIRE', k, ARGV[6])\n"
	"redis.call('ZADD', P .. 'z:kv', ARGV[5], ARGV[2])\n"
	"qadd('kv', 0, ARGV[9], ARGV[2], ARGV[5], ARGV[6])\n"
	"qadd('kv', 1, ARGV[10], ARGV[2], ARGV[5], ARGV[6])\n"
	"return 0\n";

/* ARGV: P key now cap take -> nil (absent), {len} (does not fit), {len, value} */
static const char lua_kv_get[] =
	"local P = ARGV[1]\n" LUA_QUOTA_PRELUDE
	"local k = P .. 'kv:' .. ARGV[2]\n"
	"local r = redis.call('HMGET', k, 'v', 'e', 'o', 'a')\n"
	"if not r[1] or tonumber(r[2]) <= tonumber(ARGV[3]) then return false end\n"
	"local len = string.len(r[1])\n"
	"if len > tonumber(ARGV[4]) then return {len} end\n"
	"if ARGV[5] == '1' then\n"
	"  redis.call('DEL', k)\n"
	"  redis.call('ZREM', P .. 'z:kv', ARGV[2])\n"
	"  qrem('kv', 0, r[3], ARGV[2])\n"
	"  qrem('kv', 1, r[4], ARGV[2])\n"
	"end\n"
	"return {len, r[1]}\n";

/* Ordered sets: P os:<set> (score) and P oe:<set> (expiry); expired
 * members are dropped before any read. */
#define LUA_OSET_PRELUDE \
	"local P = ARGV[1]\n" \
	"local zs, ze = P .. 'os:' .. ARGV[2], P .. 'oe:' .. ARGV[2]\n" \
	"local function purge(now)\n" \
	"  local ids = redis.call('ZRANGEBYSCORE', ze, '-inf', now, 'LIMIT', 0, 1000)\n" \
	"  for _, k in ipairs(ids) do redis.call('ZREM', zs, k); redis.call('ZREM', ze, k) end\n" \
	"end\n"

/* ARGV: P set member score expires max now -> 1 added/updated, 0 full */
static const char lua_oset_add[] = LUA_OSET_PRELUDE
	"purge(ARGV[7])\n"
	"if not redis.call('ZSCORE', ze, ARGV[3]) and\n"
	"   redis.call('ZCARD', ze) >= tonumber(ARGV[6]) then return 0 end\n"
	"redis.call('ZADD', zs, ARGV[4], ARGV[3])\n"
	"redis.call('ZADD', ze, ARGV[5], ARGV[3])\n"
	"return 1\n";

/* ARGV: P set member now -> {rank, count}, or nil when absent */
static const char lua_oset_rank[] = LUA_OSET_PRELUDE
	"purge(ARGV[4])\n"
	"local r = redis.call('ZRANK', zs, ARGV[3])\n"
	"if not r then return false end\n"
	"return {r, redis.call('ZCARD', zs)}\n";

/* ARGV: P set member -> members removed (0 or 1) */
static const char lua_oset_rem[] = LUA_OSET_PRELUDE
	"redis.call('ZREM', ze, ARGV[3])\n"
	"return redis.call('ZREM', zs, ARGV[3])\n";

/* ARGV: P set now -> live members (counted by expiry: a purge drops at
 * most 1000 expired members per call) */
static const char lua_oset_count[] = LUA_OSET_PRELUDE
	"purge(ARGV[3])\n"
	"return redis.call('ZCOUNT', ze, '(' .. ARGV[3], '+inf')\n";

/* ARGV: P set now max -> the expired members, removed */
static const char lua_oset_take[] = LUA_OSET_PRELUDE
	"local ids = redis.call('ZRANGEBYSCORE', ze, '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))\n"
	"for _, k in ipairs(ids) do redis.call('ZREM', zs, k); redis.call('ZREM', ze, k) end\n"
	"return ids\n";

enum script_id {
	SC_PUT, SC_REMOVE, SC_FIND, SC_MODELS, SC_ACTIVE, SC_FACTS, SC_SWEEP_NODES, SC_SWEEP_STORE,
	SC_NONCE, SC_RATE, SC_KV_PUT, SC_KV_GET, SC_OSET_ADD, SC_OSET_RANK, SC_OSET_REM,
	SC_OSET_COUNT, SC_OSET_TAKE, SC_LIST, SC_COUNT
};

static const char *const script_src[SC_COUNT] = {
	[SC_PUT] = lua_put, [SC_REMOVE] = lua_remove, [SC_FIND] = lua_find,
	[SC_MODELS] = lua_models, [SC_ACTIVE] = lua_active, [SC_FACTS] = lua_facts,
	[SC_SWEEP_NODES] = lua_sweep_nodes, [SC_SWEEP_STORE] = lua_sweep_store,
	[SC_NONCE] = lua_nonce, [SC_RATE] = lua_rate, [SC_KV_PUT] = lua_kv_put,
	[SC_KV_GET] = lua_kv_get, [SC_OSET_ADD] = lua_oset_add, [SC_OSET_RANK] = lua_oset_rank,
	[SC_OSET_REM] = lua_oset_rem, [SC_OSET_COUNT] = lua_oset_count,
	[SC_OSET_TAKE] = lua_oset_take,
	[SC_LIST] = lua_list,
};

/* ---- handle and connection pool ---------------------------------------------------- */

struct rconn {
	redisContext *ctx;
	struct rconn *next;
};

struct redis_registry {
	struct registry base;
	registry_opts opts;
	char host[HOST_MAX + 1];   /* or the socket path */
	bool unix_socket;
	int port;
	int db;
	char *user, *password;     /* NULL when not given */
	char prefix[PREFIX_MAX + 1];
	char desc[HOST_MAX + 32];  /* host:port/db for messages (no password) */
	int connect_ms, command_ms;
	char sha[SC_COUNT][41];    /* SCRIPT LOAD results */

	pthread_mutex_t mu;        /* guards idle, n_idle */
	struct rconn *idle;
	int n_idle;
};

static struct redis_registry *rr_of(registry *r)
{
	return (struct redis_registry *)r;
}

/* Block SIGPIPE in this thread around a command and swallow one raised
 * by it (the way libpq protects itself). */
struct pipe_guard {
	sigset_t old;
	bool was_pending;
};

static void pipe_block(struct pipe_guard *g)
{
	sigset_t set, pend;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
	sigemptyset(&pend);
	sigpending(&pend);
	g->was_pending = sigismember(&pend, SIGPIPE) == 1;
}

static void pipe_restore(struct pipe_guard *g)
{
	if (!g->was_pending) {
		sigset_t set, pend;
		sigemptyset(&pend);
		sigpending(&pend);
		if (sigismember(&pend, SIGPIPE) == 1) {
			struct timespec zero = { 0, 0 };
			sigemptyset(&set);
			sigaddset(&set, SIGPIPE);
			while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int unavailable(const struct redis_registry *rr, const char *what, const char *why)
{
	return troop_error_set(TROOP_EUNAVAIL, "registry unavailable (redis %s, %s): %s",
	    rr->desc, what, why);
}

/* A reply that is an error: map it.  Scripts only fail on server trouble
 * (memory, loading, read-only replica) or on a bug. */
static int reply_error(const struct redis_registry *rr, const redisReply *rep,
    const char *what)
{
	const char *s = rep->str ? rep->str : "";
	static const char *const down[] = { "OOM", "LOADING", "BUSY", "READONLY", "MASTERDOWN",
		"NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS", "NOPERM" };
	for (size_t i = 0; i < sizeof down / sizeof down[0]; i++)
		if (strncmp(s, down[i], strlen(down[i])) == 0)
			return unavailable(rr, what, s);
	return troop_error_set(TROOP_ERR, "registry: redis %s failed: %.300s", what, s);
}

static void conn_free(struct rconn *c)
{
	if (c == NULL)
		return;
	if (c->ctx != NULL)
		redisFree(c->ctx);
	free(c);
}

/* Run one command on a fresh connection during set-up. */
static int setup_cmd(struct redis_registry *rr, redisContext *ctx, int argc, const char **argv,
    const size_t *lens, const char *what)
{
	redisReply *rep = redisCommandArgv(ctx, argc, argv, lens);
	if (rep == NULL)
		return unavailable(rr, what, ctx->errstr[0] ? ctx->errstr : "connection lost");
	int err = rep->type == REDIS_REPLY_ERROR ? reply_error(rr, rep, what) : 0;
	freeReplyObject(rep);
	return err;
}

static int conn_new(struct rconn **out, struct redis_registry *rr)
{
	struct timeval ctv = { rr->connect_ms / 1000, (rr->connect_ms % 1000) * 1000 };
	struct timeval ttv = { rr->command_ms / 1000, (rr->command_ms % 1000) * 1000 };
	struct rconn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return nomem();
	c->ctx = rr->unix_socket ? redisConnectUnixWithTimeout(rr->host, ctv) :
	    redisConnectWithTimeout(rr->host, rr->port, ctv);
	if (c->ctx == NULL) {
		free(c);
		return nomem();
	}
	int err = 0;
	if (c->ctx->err) {
		err = unavailable(rr, "connect", c->ctx->errstr);
		goto fail;
	}
	redisSetTimeout(c->ctx, ttv);
	if (!rr->unix_socket)
		redisEnableKeepAlive(c->ctx);
	if (rr->password != NULL) {
		const char *argv[3] = { "AUTH", rr->user, rr->password };
		int argc = 3;
		if (rr->user == NULL) {
			argv[1] = rr->password;
			argc = 2;
		}
		if ((err = setup_cmd(rr, c->ctx, argc, argv, NULL, "auth")) != 0)
			goto fail;
	}
	if (rr->db != 0) {
		char dbs[16];
		snprintf(dbs, sizeof dbs, "%d", rr->db);
		const char *argv[2] = { "SELECT", dbs };
		if ((err = setup_cmd(rr, c->ctx, 2, argv, NULL, "select db")) != 0)
			goto fail;
	}
	*out = c;
	return 0;
fail:
	conn_free(c);
	return err;
}

/* Has the server closed this idle connection (a restart, a timeout, a
 * CLIENT KILL)?  An idle connection has nothing to read, so anything
 * readable, EOF included, means it is unusable. */
static bool conn_dead(const struct rconn *c)
{
	struct pollfd p = { .fd = c->ctx->fd, .events = POLLIN };
	if (c->ctx->err != 0 || c->ctx->fd < 0)
		return true;
	int n = poll(&p, 1, 0);
	return n != 0;
}

/* A connection for one call: an idle one that is still open, or a new one. */
static int acquire(struct rconn **out, struct redis_registry *rr)
{
	for (;;) {
		pthread_mutex_lock(&rr->mu);
		struct rconn *c = rr->idle;
		if (c != NULL) {
			rr->idle = c->next;
			rr->n_idle--;
		}
		pthread_mutex_unlock(&rr->mu);
		if (c == NULL)
			return conn_new(out, rr);
		c->next = NULL;
		if (!conn_dead(c)) {
			*out = c;
			return 0;
		}
		conn_free(c);  /* closed by the server while idle: try the next */
	}
}

/* Give a connection back; a broken one is closed (the next call reconnects). */
static void release(struct redis_registry *rr, struct rconn *c)
{
	if (c == NULL)
		return;
	if (c->ctx->err == 0) {
		pthread_mutex_lock(&rr->mu);
		if (rr->n_idle < POOL_IDLE_MAX) {
			c->next = rr->idle;
			rr->idle = c;
			rr->n_idle++;
			c = NULL;
		}
		pthread_mutex_unlock(&rr->mu);
	}
	conn_free(c);
}

/* ---- commands ---------------------------------------------------------------------- */

/* Arguments for one command; numbers are printed into the struct. */
#define ARGS_INLINE 24
struct cmd {
	const char **argv;
	size_t *lens;
	int argc, cap;
	const char *inl_argv[ARGS_INLINE];
	size_t inl_lens[ARGS_INLINE];
	char nums[ARGS_INLINE][24];
	int n_nums;
	bool heap;
	bool oom;
};

static void cmd_init(struct cmd *c, int cap)
{
	memset(c, 0, sizeof *c);
	c->argv = c->inl_argv;
	c->lens = c->inl_lens;
	c->cap = ARGS_INLINE;
	if (cap > ARGS_INLINE) {
		c->argv = malloc((size_t)cap * sizeof *c->argv);
		c->lens = malloc((size_t)cap * sizeof *c->lens);
		c->heap = true;
		c->cap = cap;
		if (c->argv == NULL || c->lens == NULL) {
			c->oom = true;
			c->cap = 0;
		}
	}
}

static void cmd_free(struct cmd *c)
{
	if (c->heap) {
		free(c->argv);
		free(c->lens);
	}
}

static void cmd_bin(struct cmd *c, const void *p, size_t n)
{
	if (c->argc >= c->cap) {
		c->oom = true;
		return;
	}
	c->argv[c->argc] = p ? p : "";
	c->lens[c->argc] = n;
	c->argc++;
}

static void cmd_str(struct cmd *c, const char *s)
{
	cmd_bin(c, s ? s : "", s ? strlen(s) : 0);
}

static void cmd_i64(struct cmd *c, int64_t v)
{
	if (c->n_nums >= ARGS_INLINE) {
		c->oom = true;
		return;
	}
	char *b = c->nums[c->n_nums++];
	snprintf(b, 24, "%lld", (long long)v);
	cmd_str(c, b);
}

/* Run script `id` with the arguments in `c` (after EVALSHA sha 0, which
 * cmd_script_begin reserved).  *out gets the reply (freeReplyObject). */
static int run_script(redisReply **out, struct redis_registry *rr, enum script_id id,
    struct cmd *c, const char *what)
{
	*out = NULL;
	if (c->oom)
		return nomem();
	struct rconn *conn = NULL;
	struct pipe_guard g;
	pipe_block(&g);
	int err = acquire(&conn, rr);
	if (err)
		goto out;
	c->argv[0] = "EVALSHA";
	c->lens[0] = 7;
	c->argv[1] = rr->sha[id];
	c->lens[1] = strlen(rr->sha[id]);
	redisReply *rep = redisCommandArgv(conn->ctx, c->argc, c->argv, c->lens);
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && rep->str != NULL &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
		/* the server forgot it (restart, SCRIPT FLUSH): send the body */
		freeReplyObject(rep);
		c->argv[0] = "EVAL";
		c->lens[0] = 4;
		c->argv[1] = script_src[id];
		c->lens[1] = strlen(script_src[id]);
		rep = redisCommandArgv(conn->ctx, c->argc, c->argv, c->lens);
	}
	if (rep == NULL) {
		err = unavailable(rr, what, conn->ctx->errstr[0] ? conn->ctx->errstr :
		    "connection lost");
		goto out;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		err = reply_error(rr, rep, what);
		freeReplyObject(rep);
		goto out;
	}
	*out = rep;
out:
	release(rr, conn);
	pipe_restore(&g);
	return err;
}

/* Start a script call: slots for EVALSHA, sha, numkeys (0) and the prefix. */
static void cmd_script_begin(struct cmd *c, struct redis_registry *rr, int nargs)
{
	cmd_init(c, nargs + 4);
	cmd_str(c, "EVALSHA");
	cmd_str(c, "");
	cmd_str(c, "0");
	cmd_str(c, rr->prefix);
}

/* A plain command (no script). */
static int run_cmd(redisReply **out, struct redis_registry *rr, struct cmd *c,
    const char *what)
{
	*out = NULL;
	if (c->oom)
		return nomem();
	struct rconn *conn = NULL;
	struct pipe_guard g;
	pipe_block(&g);
	int err = acquire(&conn, rr);
	if (err == 0) {
		redisReply *rep = redisCommandArgv(conn->ctx, c->argc, c->argv, c->lens);
		if (rep == NULL)
			err = unavailable(rr, what, conn->ctx->errstr[0] ? conn->ctx->errstr :
			    "connection lost");
		else if (rep->type == REDIS_REPLY_ERROR) {
			err = reply_error(rr, rep, what);
			freeReplyObject(rep);
		} else
			*out = rep;
	}
	release(rr, conn);
	pipe_restore(&g);
	return err;
}

static int bad_reply(const char *what)
{
	return troop_error_set(TROOP_ERR, "registry: unexpected reply from redis to %s", what);
}

static int64_t reply_int(const redisReply *r)
{
	if (r == NULL)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
		return strtoll(r->str, NULL, 10);
	return 0;
}

/* ---- node records ------------------------------------------------------------------ */

static int64_t real_ttl_ms(int64_t ttl_s)
{
	return ttl_s * 1000 + TTL_SLACK_MS;
}

/* The fixed fields of a record as compact JSON (malloc'd). */
static char *node_fixed_json(const registry_node *n, int64_t now)
{
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s, s:I}",
	    "name", n->name, "ip", n->ip, "port", n->port, "status",
	    registry_status_name(n->status), "max_jobs", n->max_jobs,
	    "key", n->encryption_public_key, "owner", n->owner, "version", n->version,
	    "seen", (json_int_t)now);
	if (o == NULL)
		return NULL;
	if (n->seal_key[0])
		json_object_set_new(o, "seal", json_string(n->seal_key));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* The durable facts as compact JSON (malloc'd). */
static char *node_facts_json(const registry_facts *f)
{
	json_t *o = json_pack("{s:f, s:b, s:I, s:f, s:s, s:b, s:I, s:I, s:I, s:b, s:b, s:I, s:I}",
	    "mul", f->multiplier,
	    "ver", f->verified, "vat", (json_int_t)f->verified_at, "rep", f->reputation,
	    "cls", f->hw_class, "est", f->established, "pen", (json_int_t)f->pending,
	    "dis", (json_int_t)f->disputes, "job", (json_int_t)f->jobs, "sus", f->suspended,
	    "sct", f->suspect, "aup", (json_int_t)f->audits_passed,
	    "auf", (json_int_t)f->audits_failed);
	if (o == NULL)
		return NULL;
	/* reputation (reputation.h): one object, so that older readers skip it */
	json_object_set_new(o, "rp", json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:i}",
	    "av", f->rep_availability, "rl", f->rep_reliability, "sp", f->rep_speed,
	    "au", f->rep_audits, "tt", f->ttft_ms, "tps", f->tokens_per_s,
	    "fo", (json_int_t)f->failovers, "srv", f->served_jobs));
	char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	return s;
}

/* Decode field d into *f; a record without it (written by an older
 * coordinator) has no facts: all zero. */
static bool facts_decode_plain(registry_facts *f, const redisReply *d);

static void node_facts_decode(registry_facts *f, const redisReply *d)
{
	memset(f, 0, sizeof *f);
	if (d == NULL || d->type != REDIS_REPLY_STRING)
		return;
	if (facts_decode_plain(f, d))
		return;
	memset(f, 0, sizeof *f);
	json_t *o = json_loadb(d->str, d->len, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return;
	}
	f->multiplier = json_number_value(json_object_get(o, "mul"));
	f->verified = json_is_true(json_object_get(o, "ver"));
	f->verified_at = (int64_t)json_integer_value(json_object_get(o, "vat"));
	f->reputation = json_number_value(json_object_get(o, "rep"));
	const char *cls = json_string_value(json_object_get(o, "cls"));
	snprintf(f->hw_class, sizeof f->hw_class, "%s", cls ? cls : "");
	f->established = json_is_true(json_object_get(o, "est"));
	f->pending = (int64_t)json_integer_value(json_object_get(o, "pen"));
	f->disputes = (int64_t)json_integer_value(json_object_get(o, "dis"));
	f->jobs = (int64_t)json_integer_value(json_object_get(o, "job"));
	f->suspended = json_is_true(json_object_get(o, "sus"));
	f->suspect = json_is_true(json_object_get(o, "sct"));
	f->audits_passed = (int64_t)json_integer_value(json_object_get(o, "aup"));
	f->audits_failed = (int64_t)json_integer_value(json_object_get(o, "auf"));
	{
		const json_t *rp = json_object_get(o, "rp");
		f->rep_availability = json_number_value(json_object_get(rp, "av"));
		f->rep_reliability = json_number_value(json_object_get(rp, "rl"));
		f->rep_speed = json_number_value(json_object_get(rp, "sp"));
		f->rep_audits = json_number_value(json_object_get(rp, "au"));
		f->ttft_ms = json_number_value(json_object_get(rp, "tt"));
		f->tokens_per_s = json_number_value(json_object_get(rp, "tps"));
		f->failovers = (int64_t)json_integer_value(json_object_get(rp, "fo"));
		f->served_jobs = (int)json_integer_value(json_object_get(rp, "srv"));
	}
	json_decref(o);
}

static char *node_models_json(const registry_node *n)
{
	json_t *a = json_array();
	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < n->n_models; i++) {
		const registry_model *m = &n->models[i];
		json_t *e = json_pack("[s, s, I, s, I, i, i, i]", m->name, m->content_hash,
		    (json_int_t)m->size_bytes, m->engine, (json_int_t)m->context_length,
		    (int)m->caps, (int)m->caps_known, (int)m->endpoints);
		if (e == NULL || json_array_append_new(a, e) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	char *s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src ? src : "", cap - 1);
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

static int corrupt(const char *id)
{
	return troop_error_set(TROOP_ERR, "registry: the stored record of node %s is corrupt", id);
}


/* ---- records read in place ------------------------------------------------------------
 * A record this coordinator wrote is plain JSON (jscan.h) unless a string
 * in it needed escapes or non-ASCII bytes: such fields are read here
 * without building jansson trees (most of a page's or an authorization's
 * CPU was those trees), the others with jansson as before.  Each reader
 * gives what the jansson reader gives for the same text, or false.
 */

static void copy_span(char *dst, size_t cap, const char *src, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* a string member into dst (cap bytes, truncated as copy_str does) */
static bool plain_str(jscan *s, char *dst, size_t cap)
{
	const char *v;
	size_t n;
	if (!jscan_string(s, &v, &n))
		return false;
	copy_span(dst, cap, v, n);
	return true;
}

/* The fixed fields of f into *out (every one: absent ones "" or 0) and in
 * *status_ok whether its status is one; false when f is not plain. */
static bool fixed_decode_plain(registry_node *out, const redisReply *f, bool *status_ok)
{
	jscan s;
	const char *k;
	size_t kl;
	int64_t v = 0;   /* what a failed read leaves: the record is then read again */
	int r;
	char status[32] = "";
	jscan_init(&s, f->str, f->len);
	if (!jscan_object(&s))
		return false;
	while ((r = jscan_member(&s, &k, &kl)) == 1) {
		bool ok;
		if (JSCAN_KEY(k, kl, "name"))
			ok = plain_str(&s, out->name, sizeof out->name);
		else if (JSCAN_KEY(k, kl, "ip"))
			ok = plain_str(&s, out->ip, sizeof out->ip);
		else if (JSCAN_KEY(k, kl, "key"))
			ok = plain_str(&s, out->encryption_public_key, sizeof out->encryption_public_key);
		else if (JSCAN_KEY(k, kl, "seal"))
			ok = plain_str(&s, out->seal_key, sizeof out->seal_key);
		else if (JSCAN_KEY(k, kl, "owner"))
			ok = plain_str(&s, out->owner, sizeof out->owner);
		else if (JSCAN_KEY(k, kl, "version"))
			ok = plain_str(&s, out->version, sizeof out->version);
		else if (JSCAN_KEY(k, kl, "status"))
			/* a longer one is no status; jansson's reader says so */
			ok = plain_str(&s, status, sizeof status) && strlen(status) < sizeof status - 1;
		else if (JSCAN_KEY(k, kl, "port"))
			ok = jscan_int(&s, &v), out->port = (int)v;
		else if (JSCAN_KEY(k, kl, "max_jobs"))
			ok = jscan_int(&s, &v), out->max_jobs = (int)v;
		else if (JSCAN_KEY(k, kl, "seen"))
			ok = jscan_int(&s, &v), out->last_seen = v;
		else
			ok = jscan_skip(&s);
		if (!ok)
			return false;
	}
	if (r != 0 || !jscan_end(&s))
		return false;
	node_status st = NODE_IDLE;
	*status_ok = status[0] && registry_status_parse(&st, status) == 0;
	out->status = st;
	return true;
}

/* The durable facts of d into *f (zeroed first); false when not plain. */
static bool facts_decode_plain(registry_facts *f, const redisReply *d)
{
	jscan s;
	const char *k;
	size_t kl;
	int64_t v = 0;
	double x;
	bool b;
	int r;
	memset(f, 0, sizeof *f);
	jscan_init(&s, d->str, d->len);
	if (!jscan_object(&s))
		return false;
	while ((r = jscan_member(&s, &k, &kl)) == 1) {
		bool ok = true;
		double *num = NULL;
		int64_t *integer = NULL;
		bool *flag = NULL;
		if (JSCAN_KEY(k, kl, "mul")) num = &f->multiplier;
		else if (JSCAN_KEY(k, kl, "rep")) num = &f->reputation;
		else if (JSCAN_KEY(k, kl, "vat")) integer = &f->verified_at;
		else if (JSCAN_KEY(k, kl, "pen")) integer = &f->pending;
		else if (JSCAN_KEY(k, kl, "dis")) integer = &f->disputes;
		else if (JSCAN_KEY(k, kl, "job")) integer = &f->jobs;
		else if (JSCAN_KEY(k, kl, "aup")) integer = &f->audits_passed;
		else if (JSCAN_KEY(k, kl, "auf")) integer = &f->audits_failed;
		else if (JSCAN_KEY(k, kl, "ver")) flag = &f->verified;
		else if (JSCAN_KEY(k, kl, "est")) flag = &f->established;
		else if (JSCAN_KEY(k, kl, "sus")) flag = &f->suspended;
		else if (JSCAN_KEY(k, kl, "sct")) flag = &f->suspect;
		else if (JSCAN_KEY(k, kl, "cls"))
			ok = plain_str(&s, f->hw_class, sizeof f->hw_class);
		else if (JSCAN_KEY(k, kl, "rp")) {
			/* a repeated "rp" replaces the whole object, as in jansson */
			f->rep_availability = f->rep_reliability = f->rep_speed = 0;
			f->rep_audits = f->ttft_ms = f->tokens_per_s = 0;
			f->failovers = 0;
			f->served_jobs = 0;
			ok = jscan_object(&s);
			while (ok && (r = jscan_member(&s, &k, &kl)) == 1) {
				double *rn = NULL;
				if (JSCAN_KEY(k, kl, "av")) rn = &f->rep_availability;
				else if (JSCAN_KEY(k, kl, "rl")) rn = &f->rep_reliability;
				else if (JSCAN_KEY(k, kl, "sp")) rn = &f->rep_speed;
				else if (JSCAN_KEY(k, kl, "au")) rn = &f->rep_audits;
				else if (JSCAN_KEY(k, kl, "tt")) rn = &f->ttft_ms;
				else if (JSCAN_KEY(k, kl, "tps")) rn = &f->tokens_per_s;
				if (rn != NULL)
					ok = jscan_number(&s, rn);
				else if (JSCAN_KEY(k, kl, "fo"))
					ok = jscan_int(&s, &f->failovers);
				else if (JSCAN_KEY(k, kl, "srv"))
					ok = jscan_int(&s, &v), f->served_jobs = (int)v;
				else
					ok = jscan_skip(&s);
			}
			ok = ok && r == 0;
		} else
			ok = jscan_skip(&s);
		if (num != NULL && (ok = jscan_number(&s, &x)))
			*num = x;
		if (integer != NULL && (ok = jscan_int(&s, &v)))
			*integer = v;
		if (flag != NULL && (ok = jscan_bool(&s, &b)))
			*flag = b;
		if (!ok)
			return false;
	}
	return r == 0 && jscan_end(&s);
}

/* The model list m into out->models: true when m was plain, with *err 0
 * or the error; false (nothing kept) when it was not. */
static bool models_decode_plain(registry_node *out, const char *id, const redisReply *m,
    int *err)
{
	jscan s, count;
	size_t n = 0;
	int r;
	*err = 0;
	jscan_init(&s, m->str, m->len);
	if (!jscan_array(&s))
		return false;
	count = s;
	while ((r = jscan_element(&count)) == 1) {
		if (!jscan_skip(&count))
			return false;
		if (++n > REGISTRY_MODELS_MAX) {
			*err = corrupt(id);
			return true;
		}
	}
	if (r != 0 || !jscan_end(&count))
		return false;
	if (n > 0 && (out->models = calloc(n, sizeof *out->models)) == NULL) {
		*err = nomem();
		return true;
	}
	out->n_models = n;
	for (size_t i = 0; i < n; i++) {
		registry_model *rm = &out->models[i];
		int64_t v[8] = { 0 };
		bool ok = jscan_element(&s) == 1 && jscan_array(&s);
		for (int pos = 0; ok && (r = jscan_element(&s)) == 1; pos++) {
			if (pos == 0)
				ok = plain_str(&s, rm->name, sizeof rm->name);
			else if (pos == 1)
				ok = plain_str(&s, rm->content_hash, sizeof rm->content_hash);
			else if (pos == 3)
				ok = plain_str(&s, rm->engine, sizeof rm->engine);
			else if (pos < 8)
				ok = jscan_int(&s, &v[pos]);
			else
				ok = jscan_skip(&s);
		}
		if (!ok || r != 0) {
			free(out->models);
			out->models = NULL;
			out->n_models = 0;
			return false;
		}
		rm->size_bytes = v[2];
		rm->context_length = v[4];
		rm->caps = (uint32_t)v[5] & REGISTRY_BITS_MAX;
		rm->caps_known = (uint32_t)v[6] & REGISTRY_BITS_MAX;
		rm->endpoints = (uint32_t)v[7] & REGISTRY_BITS_MAX;
		if (rm->context_length < 0 || rm->context_length > REGISTRY_CONTEXT_MAX)
			rm->context_length = 0;
	}
	return true;
}

/* fixed_decode_plain's job with jansson, for any JSON text; false when f
 * is not an object */
static bool fixed_decode_json(registry_node *out, const redisReply *f, bool *status_ok)
{
	json_t *o = json_loadb(f->str, f->len, 0, NULL);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return false;
	}
	copy_str(out->name, sizeof out->name, json_string_value(json_object_get(o, "name")));
	copy_str(out->ip, sizeof out->ip, json_string_value(json_object_get(o, "ip")));
	copy_str(out->encryption_public_key, sizeof out->encryption_public_key,
	    json_string_value(json_object_get(o, "key")));
	copy_str(out->seal_key, sizeof out->seal_key,
	    json_string_value(json_object_get(o, "seal")));
	copy_str(out->owner, sizeof out->owner, json_string_value(json_object_get(o, "owner")));
	copy_str(out->version, sizeof out->version,
	    json_string_value(json_object_get(o, "version")));
	out->port = (int)json_integer_value(json_object_get(o, "port"));
	out->max_jobs = (int)json_integer_value(json_object_get(o, "max_jobs"));
	out->last_seen = (int64_t)json_integer_value(json_object_get(o, "seen"));
	node_status st = NODE_IDLE;
	const char *sn = json_string_value(json_object_get(o, "status"));
	*status_ok = sn != NULL && registry_status_parse(&st, sn) == 0;
	out->status = st;
	json_decref(o);
	return true;
}

/* models_decode_plain's job with jansson: 0 or the error */
static int models_decode_json(registry_node *out, const char *id, const redisReply *m)
{
	json_t *arr = json_loadb(m->str, m->len, 0, NULL);
	size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
	if (!json_is_array(arr) || n > REGISTRY_MODELS_MAX) {
		json_decref(arr);
		return corrupt(id);
	}
	if (n > 0 && (out->models = calloc(n, sizeof *out->models)) == NULL) {
		json_decref(arr);
		return nomem();
	}
	out->n_models = n;
	for (size_t i = 0; i < n; i++) {
		json_t *it = json_array_get(arr, i);
		registry_model *rm = &out->models[i];
		copy_str(rm->name, sizeof rm->name, json_string_value(json_array_get(it, 0)));
		copy_str(rm->content_hash, sizeof rm->content_hash,
		    json_string_value(json_array_get(it, 1)));
		rm->size_bytes = (int64_t)json_integer_value(json_array_get(it, 2));
		copy_str(rm->engine, sizeof rm->engine, json_string_value(json_array_get(it, 3)));
		/* absent in records written before capabilities: unknown */
		rm->context_length = (int64_t)json_integer_value(json_array_get(it, 4));
		rm->caps = (uint32_t)json_integer_value(json_array_get(it, 5)) & REGISTRY_BITS_MAX;
		rm->caps_known = (uint32_t)json_integer_value(json_array_get(it, 6)) &
		    REGISTRY_BITS_MAX;
		rm->endpoints = (uint32_t)json_integer_value(json_array_get(it, 7)) &
		    REGISTRY_BITS_MAX;
		if (rm->context_length < 0 || rm->context_length > REGISTRY_CONTEXT_MAX)
			rm->context_length = 0;
	}
	json_decref(arr);
	return 0;
}

/* Fill `out` from the stored fields (bulk strings; d, m and x may be NULL). */
static int node_decode(registry_node *out, const char *id, const redisReply *f,
    const redisReply *a, const redisReply *e, const redisReply *d, const redisReply *m,
    const redisReply *x, unsigned with)
{
	bool ok = false;
	memset(out, 0, sizeof *out);
	if (f == NULL || f->type != REDIS_REPLY_STRING)
		return corrupt(id);
	copy_str(out->node_id, sizeof out->node_id, id);
	if (!fixed_decode_plain(out, f, &ok) && !fixed_decode_json(out, f, &ok))
		return corrupt(id);
	if (!ok)
		return corrupt(id);
	int64_t act = reply_int(a);
	out->active_jobs = act < 0 ? 0 : act > INT_MAX ? INT_MAX : (int)act;
	out->expires_at = reply_int(e);
	node_facts_decode(&out->facts, d);

	if ((with & REGISTRY_WITH_MODELS) && m != NULL && m->type == REDIS_REPLY_STRING) {
		int err;
		if (!models_decode_plain(out, id, m, &err))
			err = models_decode_json(out, id, m);
		if (err != 0) {
			registry_node_clear(out);
			return err;
		}
	}
	if ((with & REGISTRY_WITH_EXTRA) && x != NULL && x->type == REDIS_REPLY_STRING) {
		if ((out->extra_json = malloc(x->len + 1)) == NULL) {
			registry_node_clear(out);
			return nomem();
		}
		memcpy(out->extra_json, x->str, x->len);
		out->extra_json[x->len] = '\0';
	}
	return 0;
}

/* The capability sig of a model for the mc: index ("" when nothing is
 * known), into buf; returns buf. */
static const char *model_sig(char *buf, size_t cap, const registry_model *m)
{
	uint32_t caps = m->caps & m->caps_known;

	if (m->context_length <= 0 && caps == 0 && m->endpoints == 0)
		buf[0] = '\0';
	else
		snprintf(buf, cap, "%lld.%u.%u", (long long)m->context_length, caps, m->endpoints);
	return buf;
}

/* Fold the sigs "<ctx>.<caps>.<eps>,..." of a model into *mi. */
static void sigs_fold(registry_model_info *mi, const char *s)
{
	while (s && *s) {
		long long ctx = 0;
		unsigned caps = 0, eps = 0;
		if (sscanf(s, "%lld.%u.%u", &ctx, &caps, &eps) == 3) {
			if (ctx > mi->context_length && ctx <= REGISTRY_CONTEXT_MAX)
				mi->context_length = ctx;
			mi->caps |= caps & REGISTRY_BITS_MAX;
			mi->endpoints |= eps & REGISTRY_BITS_MAX;
		}
		s = strchr(s, ',');
		if (s)
			s++;
	}
}

static int rd_put_node(registry *r, const registry_node *rec, int64_t ttl, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	char *f = node_fixed_json(rec, now);
	char *m = node_models_json(rec);
	char *d = node_facts_json(&rec->facts);
	struct cmd c;
	redisReply *rep = NULL;
	int err = 0;
	cmd_script_begin(&c, rr, 13 + 4 * (int)rec->n_models);
	if (f == NULL || m == NULL || d == NULL) {
		err = nomem();
		goto out;
	}
	char sizes[REGISTRY_MODELS_MAX][24], sigs[REGISTRY_MODELS_MAX][48];
	cmd_str(&c, rec->node_id);
	cmd_i64(&c, now);
	cmd_i64(&c, now + ttl);
	cmd_i64(&c, real_ttl_ms(ttl));
	cmd_i64(&c, (int64_t)rr->opts.max_nodes);
	cmd_str(&c, f);
	cmd_str(&c, m);
	cmd_str(&c, rec->extra_json ? rec->extra_json : "");
	cmd_str(&c, rec->extra_json ? "1" : "0");
	cmd_i64(&c, rec->active_jobs);
	cmd_str(&c, d);
	cmd_i64(&c, (int64_t)rec->n_models);
	for (size_t i = 0; i < rec->n_models; i++) {
		snprintf(sizes[i], sizeof sizes[i], "%lld", (long long)rec->models[i].size_bytes);
		cmd_str(&c, rec->models[i].name);
		cmd_str(&c, rec->models[i].content_hash);
		cmd_str(&c, sizes[i]);
		cmd_str(&c, model_sig(sigs[i], sizeof sigs[i], &rec->models[i]));
	}
	if ((err = run_script(&rep, rr, SC_PUT, &c, "put node")) != 0)
		goto out;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
		err = bad_reply("put node");
		goto out;
	}
	if (reply_int(rep->element[0]) == 1)
		err = troop_error_set(TROOP_EUNAVAIL, "registry full: %lld live nodes",
		    (long long)(rep->elements > 1 ? reply_int(rep->element[1]) : 0));
out:
	freeReplyObject(rep);
	cmd_free(&c);
	free(f);
	free(m);
	free(d);
	return err;
}

static int rd_remove_node(registry *r, const char *node_id)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 1);
	cmd_str(&c, node_id);
	int err = run_script(&rep, rr, SC_REMOVE, &c, "remove node");
	if (err == 0 && reply_int(rep) != 1)
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_get_node(registry_node *out, registry *r, const char *node_id, int64_t now,
    unsigned with)
{
	struct redis_registry *rr = rr_of(r);
	char key[PREFIX_MAX + REGISTRY_ID_MAX + 8];
	snprintf(key, sizeof key, "%snode:%s", rr->prefix, node_id);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_init(&c, 9);
	cmd_str(&c, "HMGET");
	cmd_str(&c, key);
	cmd_str(&c, "f");
	cmd_str(&c, "a");
	cmd_str(&c, "e");
	cmd_str(&c, "d");
	cmd_str(&c, "m");
	cmd_str(&c, "x");
	if (!(with & REGISTRY_WITH_MODELS))
		c.argv[6] = "-";  /* a field that never exists: nothing sent back */
	if (!(with & REGISTRY_WITH_EXTRA))
		c.argv[7] = "-";
	c.lens[6] = strlen(c.argv[6]);
	c.lens[7] = strlen(c.argv[7]);
	int err = run_cmd(&rep, rr, &c, "get node");
	if (err == 0) {
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 6)
			err = bad_reply("get node");
		else if (rep->element[0]->type != REDIS_REPLY_STRING ||
		    reply_int(rep->element[2]) <= now)
			err = troop_error_set(TROOP_ENOTFOUND, "no live node %s", node_id);
		else
			err = node_decode(out, node_id, rep->element[0], rep->element[1],
			    rep->element[2], rep->element[3], rep->element[4], rep->element[5],
			    with);
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

/* The nodes of a SC_FIND / SC_LIST reply (7 fields per node, as lua_find
 * writes them), at most max, into *out (NULL when none) and *nout. */
static int nodes_from_reply(registry_node **out, size_t *nout, const redisReply *rep,
    size_t max, unsigned with, const char *what)
{
	registry_node *arr = NULL;
	size_t k = 0, n;
	int err = 0;

	*out = NULL;
	*nout = 0;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 7 != 0)
		return bad_reply(what);
	n = rep->elements / 7;
	if (n > max)
		n = max;
	if (n == 0)
		return 0;
	if ((arr = calloc(n, sizeof *arr)) == NULL)
		return nomem();
	for (size_t i = 0; i < n && err == 0; i++) {
		redisReply **e = &rep->element[i * 7];
		if (e[0]->type != REDIS_REPLY_STRING) {
			err = bad_reply(what);
			break;
		}
		char id[REGISTRY_ID_MAX + 1];
		copy_str(id, sizeof id, e[0]->str);
		if ((err = node_decode(&arr[k], id, e[1], e[2], e[3], e[4], e[5], e[6], with)) == 0)
			k++;
	}
	if (err != 0 || k == 0) {
		registry_nodes_free(arr, k);
		return err;
	}
	*out = arr;
	*nout = k;
	return 0;
}

static int rd_find_nodes(registry_node **out, size_t *nout, registry *r, const char *model,
    int64_t now, size_t max, unsigned with)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	int err;

	*out = NULL;
	*nout = 0;
	if (max > (size_t)INT32_MAX)
		max = INT32_MAX;
	cmd_script_begin(&c, rr, 6);
	cmd_str(&c, model ? model : "");
	cmd_i64(&c, now);
	cmd_i64(&c, (int64_t)max);
	cmd_i64(&c, (int64_t)randombytes_uniform(UINT32_MAX));
	cmd_str(&c, (with & REGISTRY_WITH_MODELS) ? "1" : "0");
	cmd_str(&c, (with & REGISTRY_WITH_EXTRA) ? "1" : "0");
	err = run_script(&rep, rr, SC_FIND, &c, "find nodes");
	if (err == 0)
		err = nodes_from_reply(out, nout, rep, max, with, "find nodes");
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_list_nodes(registry_node **out, size_t *nout, registry *r, const char *model,
    const char *after, int64_t now, size_t max, unsigned with)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	int err;

	*out = NULL;
	*nout = 0;
	if (max > (size_t)INT32_MAX)
		max = INT32_MAX;
	cmd_script_begin(&c, rr, 6);
	cmd_str(&c, model ? model : "");
	cmd_i64(&c, now);
	cmd_i64(&c, (int64_t)max);
	cmd_str(&c, after ? after : "");
	cmd_str(&c, (with & REGISTRY_WITH_MODELS) ? "1" : "0");
	cmd_str(&c, (with & REGISTRY_WITH_EXTRA) ? "1" : "0");
	err = run_script(&rep, rr, SC_LIST, &c, "list nodes");
	if (err == 0)
		err = nodes_from_reply(out, nout, rep, max, with, "list nodes");
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int cmp_model_info(const void *a, const void *b)
{
	return strcmp(((const registry_model_info *)a)->name,
	    ((const registry_model_info *)b)->name);
}

static int rd_models(registry_model_info **out, size_t *nout, registry *r, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	registry_model_info *arr = NULL;
	size_t k = 0;
	cmd_script_begin(&c, rr, 1);
	cmd_i64(&c, now);
	int err = run_script(&rep, rr, SC_MODELS, &c, "list models");
	if (err)
		goto out;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 5 != 0) {
		err = bad_reply("list models");
		goto out;
	}
	size_t n = rep->elements / 5;
	if (n == 0)
		goto out;
	if ((arr = calloc(n, sizeof *arr)) == NULL) {
		err = nomem();
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		redisReply **e = &rep->element[i * 5];
		if (e[0]->type != REDIS_REPLY_STRING || e[2]->type != REDIS_REPLY_STRING ||
		    e[4]->type != REDIS_REPLY_STRING) {
			err = bad_reply("list models");
			goto out;
		}
		registry_model_info *mi = &arr[k++];
		copy_str(mi->name, sizeof mi->name, e[0]->str);
		mi->node_count = (size_t)reply_int(e[1]);
		copy_str(mi->content_hash, sizeof mi->content_hash, e[2]->str);
		mi->size_bytes = reply_int(e[3]);
		sigs_fold(mi, e[4]->str);
	}
	qsort(arr, k, sizeof *arr, cmp_model_info);
out:
	if (err != 0 || k == 0) {
		free(arr);
		arr = NULL;
		k = 0;
	}
	*out = arr;
	*nout = k;
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_add_active_job(registry *r, const char *node_id, int delta)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 2);
	cmd_str(&c, node_id);
	cmd_i64(&c, delta);
	int err = run_script(&rep, rr, SC_ACTIVE, &c, "count active job");
	if (err == 0 && rep->type == REDIS_REPLY_NIL)
		err = troop_error_set(TROOP_ENOTFOUND, "no node %s", node_id);
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_set_facts(registry *r, const char *node_id, const registry_facts *f,
    int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	char *d = node_facts_json(f);
	struct cmd c;
	redisReply *rep = NULL;
	int err;
	if (d == NULL)
		return nomem();
	cmd_script_begin(&c, rr, 3);
	cmd_str(&c, node_id);
	cmd_i64(&c, now);
	cmd_str(&c, d);
	err = run_script(&rep, rr, SC_FACTS, &c, "set node facts");
	if (err == 0 && reply_int(rep) != 1)
		err = troop_error_set(TROOP_ENOTFOUND, "no live node %s", node_id);
	freeReplyObject(rep);
	cmd_free(&c);
	free(d);
	return err;
}

static int rd_count_nodes(size_t *out, registry *r, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	char key[PREFIX_MAX + 8], lo[32];
	snprintf(key, sizeof key, "%snodes", rr->prefix);
	snprintf(lo, sizeof lo, "(%lld", (long long)now);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_init(&c, 4);
	cmd_str(&c, "ZCOUNT");
	cmd_str(&c, key);
	cmd_str(&c, lo);
	cmd_str(&c, "+inf");
	int err = run_cmd(&rep, rr, &c, "count nodes");
	if (err == 0) {
		if (rep->type != REDIS_REPLY_INTEGER)
			err = bad_reply("count nodes");
		else
			*out = (size_t)rep->integer;
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

/* Run a sweep script until a batch comes back short; adds to *removed. */
static int sweep_loop(size_t *removed, struct redis_registry *rr, enum script_id id,
    const char *store, int64_t now)
{
	for (;;) {
		struct cmd c;
		redisReply *rep = NULL;
		cmd_script_begin(&c, rr, 3);
		if (store != NULL)
			cmd_str(&c, store);
		cmd_i64(&c, now);
		cmd_i64(&c, SWEEP_BATCH);
		int err = run_script(&rep, rr, id, &c, "sweep");
		int64_t n = err == 0 ? reply_int(rep) : 0;
		freeReplyObject(rep);
		cmd_free(&c);
		if (err)
			return err;
		*removed += (size_t)n;
		if (n < SWEEP_BATCH)
			return 0;
	}
}

static int rd_sweep(size_t *removed, registry *r, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	static const char *const stores[] = { "nonce", "rate", "kv" };
	int err = sweep_loop(removed, rr, SC_SWEEP_NODES, NULL, now);
	for (size_t i = 0; err == 0 && i < sizeof stores / sizeof stores[0]; i++)
		err = sweep_loop(removed, rr, SC_SWEEP_STORE, stores[i], now);
	return err;
}

/* ---- nonces, rates, kv --------------------------------------------------------------- */

static int rd_nonce_check(registry *r, const char *keyid, const char *nonce,
    const char *addr, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	char member[2 * REGISTRY_NONCE_PART_MAX + 2];
	snprintf(member, sizeof member, "%s\x1f%s", keyid, nonce);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 9);
	cmd_str(&c, member);
	cmd_i64(&c, now);
	cmd_i64(&c, now + REGISTRY_NONCE_WINDOW);
	cmd_i64(&c, real_ttl_ms(REGISTRY_NONCE_WINDOW));
	cmd_i64(&c, (int64_t)rr->opts.max_nonces);
	cmd_str(&c, keyid);
	cmd_str(&c, addr ? addr : "");
	cmd_i64(&c, (int64_t)rr->opts.nonce_quota_signer);
	cmd_i64(&c, (int64_t)rr->opts.nonce_quota_addr);
	int err = run_script(&rep, rr, SC_NONCE, &c, "check nonce");
	if (err == 0) {
		int64_t v = reply_int(rep);
		if (v == 1)
			err = troop_error_set(TROOP_EAUTH, "nonce already used");
		else if (v == 2)
			err = troop_error_set(TROOP_ERATE, "registry: too many live nonces");
		else if (v == 3)
			err = troop_error_set(TROOP_ERATE, "too many live nonces for one owner");
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_rate_check(registry *r, const char *key, int64_t window_s, int64_t max,
    int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 6);
	cmd_str(&c, key);
	cmd_i64(&c, now);
	cmd_i64(&c, now + window_s);
	cmd_i64(&c, real_ttl_ms(window_s));
	cmd_i64(&c, (int64_t)rr->opts.max_rate);
	cmd_i64(&c, max);
	int err = run_script(&rep, rr, SC_RATE, &c, "check rate");
	if (err == 0) {
		int64_t v = reply_int(rep);
		if (v == 1)
			err = troop_error_set(TROOP_ERATE, "rate limit: %lld per %lld s",
			    (long long)max, (long long)window_s);
		else if (v == 2)
			err = troop_error_set(TROOP_ERATE, "registry: too many live rate-limit keys");
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_kv_put(registry *r, const char *key, const void *value, size_t len,
    int64_t ttl_s, unsigned flags, const char *owner, const char *addr, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 11);
	cmd_str(&c, key);
	cmd_bin(&c, value, len);
	cmd_i64(&c, now);
	cmd_i64(&c, now + ttl_s);
	cmd_i64(&c, real_ttl_ms(ttl_s));
	cmd_str(&c, (flags & REGISTRY_KV_NX) ? "1" : "0");
	cmd_i64(&c, (int64_t)rr->opts.max_kv);
	cmd_str(&c, owner ? owner : "");
	cmd_str(&c, addr ? addr : "");
	cmd_i64(&c, (int64_t)rr->opts.kv_quota_owner);
	cmd_i64(&c, (int64_t)rr->opts.kv_quota_addr);
	int err = run_script(&rep, rr, SC_KV_PUT, &c, "put key");
	if (err == 0) {
		int64_t v = reply_int(rep);
		if (v == 1)
			err = troop_error_set(TROOP_ECONFLICT, "key already present");
		else if (v == 2)
			err = troop_error_set(TROOP_EUNAVAIL, "registry: too many live key/value "
			    "entries");
		else if (v == 3)
			err = troop_error_set(TROOP_ERATE, "too many live key/value entries for one "
			    "owner");
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_kv_get(void *buf, size_t cap, size_t *len, registry *r, const char *key,
    int64_t now, bool take)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 4);
	cmd_str(&c, key);
	cmd_i64(&c, now);
	cmd_i64(&c, cap > (size_t)INT64_MAX ? INT64_MAX : (int64_t)cap);
	cmd_str(&c, take ? "1" : "0");
	int err = run_script(&rep, rr, SC_KV_GET, &c, take ? "take key" : "get key");
	if (err)
		goto out;
	if (rep->type == REDIS_REPLY_NIL) {
		err = troop_error_set(TROOP_ENOTFOUND, "no live key '%s'", key);
		goto out;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
		err = bad_reply("get key");
		goto out;
	}
	*len = (size_t)reply_int(rep->element[0]);
	if (rep->elements < 2) {
		err = troop_error_set(TROOP_ETOOLARGE, "value of '%s' is %zu bytes, buffer %zu",
		    key, *len, cap);
		goto out;
	}
	const redisReply *v = rep->element[1];
	if (v->type != REDIS_REPLY_STRING || v->len > cap) {
		err = bad_reply("get key");
		goto out;
	}
	if (v->len > 0)
		memcpy(buf, v->str, v->len);
	*len = v->len;
out:
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

/* ---- ordered sets ------------------------------------------------------------- */

static int rd_set_add(registry *r, const char *set, const char *member, int64_t score,
    int64_t expires, size_t max, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 6);
	cmd_str(&c, set);
	cmd_str(&c, member);
	cmd_i64(&c, score);
	cmd_i64(&c, expires);
	cmd_i64(&c, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
	cmd_i64(&c, now);
	int err = run_script(&rep, rr, SC_OSET_ADD, &c, "set add");
	if (err == 0 && rep->type != REDIS_REPLY_INTEGER)
		err = bad_reply("set add");
	else if (err == 0 && rep->integer == 0)
		err = troop_error_set(TROOP_ERATE, "registry: set %.64s is full (%zu)", set, max);
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_set_rank(int64_t *rank, size_t *count, registry *r, const char *set,
    const char *member, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 3);
	cmd_str(&c, set);
	cmd_str(&c, member);
	cmd_i64(&c, now);
	int err = run_script(&rep, rr, SC_OSET_RANK, &c, "set rank");
	if (err == 0) {
		if (rep->type == REDIS_REPLY_NIL) {
			err = troop_error_set(TROOP_ENOTFOUND, "registry: not in the set");
		} else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
			err = bad_reply("set rank");
		} else {
			*rank = reply_int(rep->element[0]);
			*count = (size_t)reply_int(rep->element[1]);
		}
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_set_remove(registry *r, const char *set, const char *member)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 2);
	cmd_str(&c, set);
	cmd_str(&c, member);
	int err = run_script(&rep, rr, SC_OSET_REM, &c, "set remove");
	if (err == 0 && rep->type != REDIS_REPLY_INTEGER)
		err = bad_reply("set remove");
	else if (err == 0 && rep->integer == 0)
		err = troop_error_set(TROOP_ENOTFOUND, "registry: not in the set");
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_set_count(size_t *count, registry *r, const char *set, int64_t now)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 2);
	cmd_str(&c, set);
	cmd_i64(&c, now);
	int err = run_script(&rep, rr, SC_OSET_COUNT, &c, "set count");
	if (err == 0 && rep->type != REDIS_REPLY_INTEGER)
		err = bad_reply("set count");
	else if (err == 0)
		*count = (size_t)rep->integer;
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

static int rd_set_take_expired(char ***out, size_t *n, registry *r, const char *set,
    int64_t now, size_t max)
{
	struct redis_registry *rr = rr_of(r);
	struct cmd c;
	redisReply *rep = NULL;
	cmd_script_begin(&c, rr, 3);
	cmd_str(&c, set);
	cmd_i64(&c, now);
	cmd_i64(&c, max > 100000 ? 100000 : (int64_t)max);
	int err = run_script(&rep, rr, SC_OSET_TAKE, &c, "set take");
	if (err == 0 && rep->type != REDIS_REPLY_ARRAY)
		err = bad_reply("set take");
	if (err == 0 && rep->elements > 0) {
		char **arr = calloc(rep->elements, sizeof *arr);
		if (arr == NULL)
			err = nomem();
		for (size_t i = 0; arr != NULL && i < rep->elements; i++) {
			const redisReply *e = rep->element[i];
			if (e->type != REDIS_REPLY_STRING || (arr[*n] = strndup(e->str, e->len)) == NULL)
				continue;
			(*n)++;
		}
		*out = arr;
	}
	freeReplyObject(rep);
	cmd_free(&c);
	return err;
}

/* ---- lifetime ------------------------------------------------------------- */

static void rd_close(registry *r)
{
	struct redis_registry *rr = rr_of(r);
	if (rr == NULL)
		return;
	while (rr->idle != NULL) {
		struct rconn *c = rr->idle;
		rr->idle = c->next;
		conn_free(c);
	}
	pthread_mutex_destroy(&rr->mu);
	if (rr->password != NULL) {
		sodium_memzero(rr->password, strlen(rr->password));
		free(rr->password);
	}
	free(rr->user);
	free(rr);
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into a new string; NULL on bad escapes, NUL bytes
 * or no memory (*oom says which). */
static char *pct_decode(const char *s, size_t n, bool *oom)
{
	char *out = malloc(n + 1);
	size_t k = 0;
	*oom = out == NULL;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			out[k++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[k++] = s[i];
		}
	}
	out[k] = '\0';
	return out;
}

static int bad_url(const char *why)
{
	return troop_error_set(TROOP_EINVAL, "registry URL: %s (expected redis://[[user]:"
	    "password@]host[:port][/db][?prefix=P&timeout_ms=N] or unix:///path[?db=N])", why);
}

static int parse_int(int *out, const char *s, size_t n, long min, long max)
{
	char buf[24];
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *end = NULL;
	long v = strtol(buf, &end, 10);
	if (*end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* Query string: prefix=, timeout_ms=, connect_timeout_ms=, db= */
static int parse_query(struct redis_registry *rr, const char *q)
{
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', n);
		if (eq == NULL)
			return bad_url("a query option without '='");
		size_t kn = (size_t)(eq - q), vn = n - kn - 1;
		const char *v = eq + 1;
		if (kn == 6 && strncmp(q, "prefix", 6) == 0) {
			bool oom = false;
			char *p = pct_decode(v, vn, &oom);
			if (p == NULL)
				return oom ? nomem() : bad_url("bad escape in prefix");
			size_t pl = strlen(p);
			if (pl > PREFIX_MAX) {
				free(p);
				return troop_error_set(TROOP_ETOOLARGE, "registry URL: prefix is longer "
				    "than %d bytes", PREFIX_MAX);
			}
			memcpy(rr->prefix, p, pl + 1);
			free(p);
		} else if (kn == 10 && strncmp(q, "timeout_ms", 10) == 0) {
			if (parse_int(&rr->command_ms, v, vn, 1, 600000) != 0)
				return bad_url("timeout_ms must be 1..600000");
		} else if (kn == 18 && strncmp(q, "connect_timeout_ms", 18) == 0) {
			if (parse_int(&rr->connect_ms, v, vn, 1, 600000) != 0)
				return bad_url("connect_timeout_ms must be 1..600000");
		} else if (kn == 2 && strncmp(q, "db", 2) == 0) {
			if (parse_int(&rr->db, v, vn, 0, 100000) != 0)
				return bad_url("db must be a number");
		} else {
			return troop_error_set(TROOP_EINVAL, "registry URL: unknown option '%.*s' "
			    "(known: prefix, db, timeout_ms, connect_timeout_ms)", (int)kn, q);
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

static int parse_url(struct redis_registry *rr, const char *url)
{
	snprintf(rr->prefix, sizeof rr->prefix, "%s", PREFIX_DEFAULT);
	rr->connect_ms = CONNECT_TIMEOUT_MS;
	rr->command_ms = COMMAND_TIMEOUT_MS;
	rr->port = 6379;
	if (strncmp(url, "rediss://", 9) == 0)
		return bad_url("TLS (rediss://) is not supported; use a local TLS tunnel");
	const char *q = strchr(url, '?');
	size_t main_len = q ? (size_t)(q - url) : strlen(url);
	int err;

	if (strncmp(url, "unix://", 7) == 0) {
		size_t pl = main_len - 7;
		if (pl == 0 || url[7] != '/')
			return bad_url("unix:// needs an absolute socket path");
		/* unix://user:password@/path is another client's syntax: taken
		 * as a path it would put the password in every message */
		if (memchr(url + 7, '@', pl))
			return bad_url("a unix:// socket path cannot hold '@' (credentials are "
			    "only supported in redis:// URLs)");
		if (pl > HOST_MAX)
			return troop_error_set(TROOP_ETOOLARGE, "registry URL: socket path too long");
		memcpy(rr->host, url + 7, pl);
		rr->host[pl] = '\0';
		rr->unix_socket = true;
	} else {
		const char *p = url + 8;  /* after redis:// */
		const char *end = url + main_len;
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *auth_end = NULL;
		for (const char *s = p; s < (slash ? slash : end); s++)
			if (*s == '@')
				auth_end = s;
		if (auth_end != NULL) {
			const char *colon = memchr(p, ':', (size_t)(auth_end - p));
			bool oom = false;
			if (colon == NULL)
				return bad_url("credentials must be [user]:password@");
			if (colon > p && (rr->user = pct_decode(p, (size_t)(colon - p), &oom)) == NULL)
				return oom ? nomem() : bad_url("bad escape in user");
			rr->password = pct_decode(colon + 1, (size_t)(auth_end - colon - 1), &oom);
			if (rr->password == NULL)
				return oom ? nomem() : bad_url("bad escape in password");
			p = auth_end + 1;
		}
		const char *hend = slash ? slash : end;
		const char *hstart = p, *port = NULL;
		if (*p == '[') {  /* [ipv6]:port */
			const char *rb = memchr(p, ']', (size_t)(hend - p));
			if (rb == NULL)
				return bad_url("unclosed '[' in host");
			hstart = p + 1;
			port = (rb + 1 < hend && rb[1] == ':') ? rb + 2 : NULL;
			hend = rb;
		} else {
			const char *colon = memchr(p, ':', (size_t)(hend - p));
			if (colon != NULL) {
				port = colon + 1;
				hend = colon;
			}
		}
		size_t hl = (size_t)(hend - hstart);
		if (hl == 0)
			return bad_url("no host");
		if (hl > HOST_MAX)
			return troop_error_set(TROOP_ETOOLARGE, "registry URL: host name too long");
		memcpy(rr->host, hstart, hl);
		rr->host[hl] = '\0';
		if (port != NULL) {
			const char *pend = slash ? slash : end;
			if (parse_int(&rr->port, port, (size_t)(pend - port), 1, 65535) != 0)
				return bad_url("port must be 1..65535");
		}
		if (slash != NULL && slash + 1 < end &&
		    parse_int(&rr->db, slash + 1, (size_t)(end - slash - 1), 0, 100000) != 0)
			return bad_url("the path must be a database number");
	}
	if ((err = parse_query(rr, q ? q + 1 : NULL)) != 0)
		return err;
	if (rr->unix_socket)
		snprintf(rr->desc, sizeof rr->desc, "%s/%d", rr->host, rr->db);
	else
		snprintf(rr->desc, sizeof rr->desc, "%s:%d/%d", rr->host, rr->port, rr->db);
	return 0;
}

int registry_redis_url_check(const char *url, char *desc, size_t desc_len)
{
	struct redis_registry *rr = calloc(1, sizeof *rr);
	int err;

	if (rr == NULL)
		return nomem();
	if (strncmp(url, "redis://", 8) != 0 && strncmp(url, "rediss://", 9) != 0 &&
	    strncmp(url, "unix://", 7) != 0)
		err = bad_url("expected redis://, unix:// (rediss:// is refused)");
	else
		err = parse_url(rr, url);
	if (err == 0 && desc && desc_len)
		snprintf(desc, desc_len, "%s", rr->desc);
	free(rr->user);
	if (rr->password) {
		sodium_memzero(rr->password, strlen(rr->password));
		free(rr->password);
	}
	free(rr);
	return err;
}

/* Load every script. */
static int load_scripts(struct redis_registry *rr, redisContext *ctx)
{
	for (int i = 0; i < SC_COUNT; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", script_src[i] };
		redisReply *rep = redisCommandArgv(ctx, 3, argv, NULL);
		if (rep == NULL)
			return unavailable(rr, "load scripts", ctx->errstr[0] ? ctx->errstr :
			    "connection lost");
		int err = 0;
		if (rep->type == REDIS_REPLY_ERROR)
			err = reply_error(rr, rep, "load scripts");
		else if (rep->type != REDIS_REPLY_STRING || rep->len != 40)
			err = bad_reply("SCRIPT LOAD");
		else
			memcpy(rr->sha[i], rep->str, 41);
		freeReplyObject(rep);
		if (err)
			return err;
	}
	return 0;
}

static int rd_open(registry **out, const char *target, const registry_opts *opts)
{
	if (sodium_init() < 0)
		return troop_error_set(TROOP_ERR, "registry: libsodium failed to initialise");
	struct redis_registry *rr = calloc(1, sizeof *rr);
	if (rr == NULL)
		return nomem();
	rr->base.ops = &registry_redis_ops;
	rr->opts = *opts;
	pthread_mutex_init(&rr->mu, NULL);
	struct rconn *c = NULL;
	struct pipe_guard g;
	pipe_block(&g);
	int err = parse_url(rr, target);
	if (err == 0)
		err = conn_new(&c, rr);
	if (err == 0)
		err = load_scripts(rr, c->ctx);
	pipe_restore(&g);
	if (err) {
		conn_free(c);
		rd_close(&rr->base);
		return err;
	}
	release(rr, c);
	log_info("registry_open", "backend=redis server=%s prefix=%s", rr->desc, rr->prefix);
	*out = &rr->base;
	return 0;
}

const struct registry_ops registry_redis_ops = {
	.name = "redis",
	.open = rd_open,
	.close = rd_close,
	.put_node = rd_put_node,
	.remove_node = rd_remove_node,
	.get_node = rd_get_node,
	.find_nodes = rd_find_nodes,
	.list_nodes = rd_list_nodes,
	.models = rd_models,
	.add_active_job = rd_add_active_job,
	.set_facts = rd_set_facts,
	.count_nodes = rd_count_nodes,
	.sweep = rd_sweep,
	.nonce_check = rd_nonce_check,
	.rate_check = rd_rate_check,
	.kv_put = rd_kv_put,
	.kv_get = rd_kv_get,
	.set_add = rd_set_add,
	.set_rank = rd_set_rank,
	.set_remove = rd_set_remove,
	.set_count = rd_set_count,
	.set_take_expired = rd_set_take_expired,
};

#endif /* TROOP_HAVE_HIREDIS */
