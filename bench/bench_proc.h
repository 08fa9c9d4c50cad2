/*
 * bench_proc.h - CPU time of processes, for the benchmark programs in
 * bench/ (each is its own program: these are static inline).
 */
#ifndef TROOP_BENCH_PROC_H
#define TROOP_BENCH_PROC_H

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* CPU seconds (user + system) process `pid` has used so far; 0 when /proc
 * cannot tell. */
static inline double bench_proc_cpu_s(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (pid <= 0 || !(f = fopen(path, "r")))
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the command name, which may hold spaces: 14 utime, 15 stime */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds this process has used so far (all threads). */
static inline double bench_self_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
