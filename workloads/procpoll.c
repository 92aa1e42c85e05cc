// SPDX-License-Identifier: GPL-2.0
/*
 * procpoll - sample /proc/<pid>/stat of given processes at a fixed rate.
 *
 *   procpoll [-i MS] [-o FILE] [--max-seconds S] PID...
 *
 * The peer that the benchmarks compare pfprof against, answering "why not
 * just poll /proc/<pid>/stat at 20 Hz?": the same numbers as pfprof's
 * records (page faults and CPU time), read from user space every interval
 * (default 50 ms, pfprof's default). So that the comparison is fair it is
 * as cheap as a poller gets: one fd per pid kept open and re-read with
 * pread(), no allocation in the loop, one write per sample, a drift-free
 * absolute schedule, and it mlock()s itself like monitor does. One CSV row
 * per pid per sample:
 *   ts_ns,pid,minflt,majflt,cpu_ns
 * with the cumulative totals of the stat line. See workloads/README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define NSEC 1000000000ULL
#define OUT_BUFFER (256 * 1024)	/* rows of one sample: a single write(2) */

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

struct target {
	pid_t pid;
	int fd;			/* /proc/<pid>/stat; -1 once the process is gone */
};

/* The fields of a stat line that procpoll reports. */
struct stat_fields {
	char state;
	uint64_t minflt, majflt, utime, stime;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: procpoll [options] PID...\n"
"  -i, --interval-ms MS   sampling period (default 50, i.e. 20 Hz; 1-60000)\n"
"  -o, --output FILE      write to FILE instead of stdout\n"
"  --max-seconds S        stop after S seconds (samples taken in [0, S))\n"
"One CSV row per pid per sample, with a header row\n"
"  ts_ns,pid,minflt,majflt,cpu_ns\n"
"(CLOCK_MONOTONIC of the sample; cumulative totals of /proc/<pid>/stat). A\n"
"process that exited stops being sampled; procpoll ends when none is left,\n"
"after --max-seconds, or on SIGINT/SIGTERM, with a summary line on stderr.\n");
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static void bad_arg(const char *what, const char *value)
{
	fprintf(stderr, "procpoll: invalid %s: '%s'\n", what, value);
	usage(stderr);
	exit(EXIT_USAGE);
}

/*
 * Parse a stat line: "pid (comm) state ppid ...". comm may hold spaces, ')'
 * and anything else, but nothing after it does, so the fields start after
 * the last ')'. Field 3 is the state, 10 minflt, 12 majflt, 14 utime and
 * 15 stime (in clock ticks); tty_nr and tpgid before them may be negative.
 */
static bool parse_stat(const char *buf, size_t len, struct stat_fields *f)
{
	const char *p = memrchr(buf, ')', len), *end = buf + len;
	uint64_t *want[16] = { [10] = &f->minflt, [12] = &f->majflt,
			       [14] = &f->utime, [15] = &f->stime };

	if (!p)
		return false;
	p++;
	for (int field = 3; field <= 15; field++) {
		if (p == end || *p != ' ')
			return false;
		p++;
		if (p == end || *p == ' ' || *p == '\n')
			return false;
		if (field == 3) {
			f->state = *p++;
		} else if (want[field]) {
			uint64_t v = 0;

			if (*p < '0' || *p > '9')
				return false;
			for (; p < end && *p >= '0' && *p <= '9'; p++)
				v = v * 10 + (uint64_t)(*p - '0');
			*want[field] = v;
		} else {
			while (p < end && *p != ' ' && *p != '\n')
				p++;
		}
	}
	return p == end || *p == ' ' || *p == '\n';
}

/* Clock ticks to ns without overflow (ticks * 1e9 would wrap after ~6 CPU-years at 100 Hz). */
static uint64_t ticks_ns(uint64_t ticks, uint64_t hz)
{
	return ticks / hz * NSEC + ticks % hz * NSEC / hz;
}

/*
 * Read one target's stat line. Returns 1 with *f filled, 0 if the process
 * has gone (its fd pins the struct pid, so a recycled pid number is never
 * mistaken for it: the read fails with ESRCH), -1 on any other error
 * (message printed).
 */
static int read_target(const struct target *t, struct stat_fields *f)
{
	/* The whole line is < 1 KiB; procfs formats it afresh on each read at offset 0. */
	static char buf[4096];
	ssize_t n;

	do
		n = pread(t->fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == ESRCH)
		return 0;
	if (n < 0) {
		fprintf(stderr, "procpoll: pid %d: reading /proc/%d/stat: %s\n", (int)t->pid,
			(int)t->pid, strerror(errno));
		return -1;
	}
	if (n == 0)
		return 0;
	if (!parse_stat(buf, (size_t)n, f)) {
		fprintf(stderr, "procpoll: pid %d: cannot parse /proc/%d/stat\n", (int)t->pid,
			(int)t->pid);
		return -1;
	}
	/* A zombie's counters are no longer the running process's: its last live row stands. */
	return f->state == 'Z' || f->state == 'X' ? 0 : 1;
}

int main(int argc, char **argv)
{
	enum { OPT_MAX_SECONDS = 256 };
	static const struct option longopts[] = {
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "max-seconds", required_argument, NULL, OPT_MAX_SECONDS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL;
	long interval_ms = 50, hz;
	double max_seconds = 0;
	struct target *targets;
	size_t ntargets = 0, alive;
	uint64_t interval, t0, k = 0, max_slots = 0, samples = 0, rows = 0, late = 0;
	struct sigaction sa = { 0 };
	struct rlimit nofile;
	FILE *out = stdout;
	char *end;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "i:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (!parse_long(optarg, 1, 60000, &interval_ms))
				bad_arg("--interval-ms (1-60000)", optarg);
			break;
		case 'o':
			output = optarg;
			break;
		case OPT_MAX_SECONDS:
			errno = 0;
			max_seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(max_seconds > 0 && max_seconds <= 1e9))
				bad_arg("--max-seconds", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind == argc) {
		fprintf(stderr, "procpoll: no pid given\n");
		usage(stderr);
		return EXIT_USAGE;
	}

	targets = calloc((size_t)(argc - optind), sizeof(*targets));
	if (!targets) {
		fprintf(stderr, "procpoll: out of memory\n");
		return 1;
	}
	for (int i = optind; i < argc; i++) {
		long pid;
		bool dup = false;

		if (!parse_long(argv[i], 1, INT_MAX, &pid))
			bad_arg("pid", argv[i]);
		for (size_t j = 0; j < ntargets; j++)
			dup |= targets[j].pid == (pid_t)pid;
		if (!dup)	/* a pid given twice is sampled once */
			targets[ntargets++].pid = (pid_t)pid;
	}
	/* One fd per pid: many pids may need more than the soft limit (1024). */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max &&
	    nofile.rlim_cur < ntargets + 16) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	for (size_t j = 0; j < ntargets; j++) {
		char path[32];

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)targets[j].pid);
		targets[j].fd = open(path, O_RDONLY | O_CLOEXEC);
		if (targets[j].fd < 0) {
			if (errno == ENOENT || errno == ESRCH)
				fprintf(stderr, "procpoll: no process with pid %d\n", (int)targets[j].pid);
			else
				fprintf(stderr, "procpoll: pid %d: cannot open %s: %s\n",
					(int)targets[j].pid, path, strerror(errno));
			return 1;
		}
	}
	alive = ntargets;

	hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0) {
		fprintf(stderr, "procpoll: sysconf(_SC_CLK_TCK) failed\n");
		return 1;
	}
	if (output) {
		out = fopen(output, "we");
		if (!out) {
			fprintf(stderr, "procpoll: cannot open %s: %s\n", output, strerror(errno));
			return 1;
		}
	}
	/* Rows of a sample collect in the buffer; the fflush per sample is the one write. */
	if (setvbuf(out, NULL, _IOFBF, OUT_BUFFER) != 0) {
		fprintf(stderr, "procpoll: setvbuf failed\n");
		return 1;
	}

	/*
	 * A fair peer of monitor, which does the same: a poller whose pages are
	 * swapped out falls behind exactly when the machine thrashes.
	 */
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		fprintf(stderr, "procpoll: warning: mlockall: %s (may fall behind under memory pressure)\n",
			strerror(errno));

	/*
	 * SA_RESTART keeps writes from failing with EINTR; clock_nanosleep is
	 * interrupted by a handled signal regardless of it.
	 */
	sa.sa_handler = on_stop;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);	/* a closed pipe is a write error below */

	fputs("ts_ns,pid,minflt,majflt,cpu_ns\n", out);
	if (fflush(out) != 0) {
		fprintf(stderr, "procpoll: write error: %s\n", strerror(errno));
		return 1;
	}

	interval = (uint64_t)interval_ms * 1000000u;
	/* --max-seconds: the slots k with k * interval < S */
	if (max_seconds > 0)
		max_slots = ((uint64_t)(max_seconds * 1e9) + interval - 1) / interval;
	t0 = mono_ns();
	for (;;) {
		/* One time stamp per sample, read before the first pid is. */
		uint64_t ts = mono_ns(), due, now;
		size_t wrote = 0;

		for (size_t j = 0; j < ntargets; j++) {
			struct stat_fields f;
			int r;

			if (targets[j].fd < 0)
				continue;
			r = read_target(&targets[j], &f);
			if (r <= 0) {
				if (r < 0)
					rc = 1;
				close(targets[j].fd);
				targets[j].fd = -1;
				alive--;
				continue;
			}
			fprintf(out, "%" PRIu64 ",%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", ts,
				(int)targets[j].pid, f.minflt, f.majflt,
				ticks_ns(f.utime + f.stime, (uint64_t)hz));
			wrote++;
		}
		if (wrote) {
			samples++;
			rows += wrote;
		}
		if (fflush(out) != 0) {
			fprintf(stderr, "procpoll: write error: %s\n", strerror(errno));
			return 1;
		}
		if (!alive || stop_signal)
			break;

		k++;
		if (max_slots && k >= max_slots)
			break;
		due = t0 + k * interval;
		/*
		 * Absolute deadlines do not drift. A signal landing between the check
		 * above and the call is seen one interval later at the latest.
		 */
		while (!stop_signal &&
		       clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
				       &(struct timespec){ (time_t)(due / NSEC), (long)(due % NSEC) },
				       NULL) == EINTR)
			;
		if (stop_signal)
			break;
		/*
		 * Woke a whole interval or more late: slots k .. k+missed-1 are
		 * skipped (late), this sample is slot k+missed: no burst. So
		 * samples + late counts every slot while all pids live.
		 */
		now = mono_ns();
		if (now > due && now - due >= interval) {
			uint64_t missed = (now - due) / interval;

			if (max_slots && k + missed >= max_slots) {
				late += max_slots - k;
				break;
			}
			late += missed;
			k += missed;
		}
	}

	fprintf(stderr, "procpoll: samples %" PRIu64 " rows %" PRIu64 " late %" PRIu64 " pids %zu\n",
		samples, rows, late, ntargets);
	if (out != stdout && fclose(out) != 0) {
		fprintf(stderr, "procpoll: closing %s: %s\n", output, strerror(errno));
		return 1;
	}
	free(targets);
	return rc;
}
