/*
 * subproc.h - run a helper program (nvidia-smi, tailscale) and capture its
 * standard output, with a deadline and a size limit.
 *
 * The worker asks a few system tools for facts it cannot get otherwise.
 * They are run directly with posix_spawnp (found on $PATH, never through a
 * shell), with stdin and stderr on /dev/null, so nothing in their arguments
 * is ever interpreted.  A tool that overruns its deadline is killed
 * (SIGKILL) and reaped; a tool that prints more than the caller's buffer
 * holds is killed too.  No zombie is left behind in any case.
 */
#ifndef TROOP_SUBPROC_H
#define TROOP_SUBPROC_H

#include <stddef.h>

/* Run argv[0] (looked up on $PATH) with arguments argv[1..] (NULL
 * terminated) and read its standard output into out (capacity outlen,
 * always NUL-terminated; *outn gets the byte count without the NUL; outn
 * may be NULL).  Waits at most timeout_ms milliseconds in all.
 *
 * Returns 0 when the program ran and exited by itself; its exit status is
 * stored in *exit_status (0..255, or 128+N when killed by signal N).
 * Errors (message set, out holds whatever was read):
 *   TROOP_ENOTFOUND  the program is not on $PATH (or not executable)
 *   TROOP_ETIMEOUT   it was still running at the deadline (killed)
 *   TROOP_ETOOLARGE  it printed more than outlen - 1 bytes (killed)
 *   TROOP_EIO        pipe / spawn / read failed
 * Thread-safe: it touches no shared state (descriptors are close-on-exec,
 * and only the spawned child is waited for). */
int subproc_capture(char *out, size_t outlen, size_t *outn,
    const char *const argv[], int timeout_ms, int *exit_status);

#endif
